//! A panic turned into an error, where one failing part must not take the others down with it.

/// Runs `f`; a panic inside it becomes `Err` carrying the panic's message. The panic hook has
/// printed it with its location already; state `f` left half-changed is the caller's to discard.
pub fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into())
    })
}

#[cfg(test)]
mod tests {
    /// Both kinds of payload `panic!` makes come back as their text; no panic, the value.
    #[test]
    fn a_panic_comes_back_as_its_message() {
        assert_eq!(super::catch(|| 3), Ok(3));
        assert_eq!(super::catch(|| -> () { panic!("literal") }), Err("literal".into()));
        let n = 7;
        assert_eq!(super::catch(|| -> () { panic!("formatted {n}") }), Err("formatted 7".into()));
    }
}
