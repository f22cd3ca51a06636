//! Recipe parameters as people read them. An `f32` parameter is hashed as the `f64` it widens to,
//! so `lr = 0.1` is stored as 0.10000000149011612; shown, it is 0.1 again. Only what is printed
//! changes: keys and records keep the widened value.

use serde_json::Value as Json;

/// `v` with every number that is exactly an `f32` written in that `f32`'s shortest form.
pub fn readable(v: &Json) -> Json {
    match v {
        Json::Object(map) => Json::Object(map.iter().map(|(k, v)| (k.clone(), readable(v))).collect()),
        Json::Array(items) => Json::Array(items.iter().map(readable).collect()),
        Json::Number(n) if n.is_f64() => n.as_f64().and_then(narrowed).map_or_else(|| v.clone(), Json::from),
        _ => v.clone(),
    }
}

/// The `f64` whose shortest form is that of the `f32` equal to `x`, when there is one. An `f64`
/// parameter is left alone: unless it is exactly an `f32`, and then its `f32` form reads the
/// same or parses back to it.
fn narrowed(x: f64) -> Option<f64> {
    let f = x as f32;
    (f.is_finite() && f64::from(f) == x).then(|| f.to_string().parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn widened_f32s_read_as_written_and_the_rest_is_untouched() {
        let stored = json!({"lr": f64::from(0.1f32), "wd": [f64::from(1e-4f32)], "t": 4.0, "x": 0.1,
                            "n": 3, "s": "0.10000000149011612", "big": 1e300, "seconds": 0.000544592});
        assert_eq!(stored["lr"].to_string(), "0.10000000149011612");
        let shown = readable(&stored);
        assert_eq!(
            shown.to_string(),
            r#"{"big":1e+300,"lr":0.1,"n":3,"s":"0.10000000149011612","seconds":0.000544592,"t":4.0,"wd":[0.0001],"x":0.1}"#
        );
        // What is shown, read back as the f32 parameter it was, is the value hashed.
        assert_eq!(shown["lr"].as_f64().unwrap() as f32, 0.1f32);
        assert_eq!(shown["wd"][0].as_f64().unwrap() as f32, 1e-4f32);
    }
}
