//! Typed identities: a recipe key and an object digest are both blake3 hashes, but never
//! interchangeable. Both print as `blake3:<hex>`; file names use the bare hex.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// Lower-case hex, as used in file names.
            pub fn hex(&self) -> String {
                hex::encode(self.0)
            }

            /// The first 12 hex digits, for logs.
            pub fn short(&self) -> String {
                self.hex()[..12].to_string()
            }

            /// Parses `blake3:<hex>` or bare hex (a file name), lower-case as cfrun writes it:
            /// another spelling of the same bytes is not how cfrun wrote it, so it is damage.
            pub fn parse(s: &str) -> Option<Self> {
                let hex_part = s.strip_prefix("blake3:").unwrap_or(s);
                if !hex_part.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
                    return None;
                }
                let bytes = hex::decode(hex_part).ok()?;
                Some(Self(bytes.try_into().ok()?))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "blake3:{}", self.hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.short())
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_string())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                // In records only the written form, `blake3:` included.
                Self::parse(&s)
                    .filter(|_| s.starts_with("blake3:"))
                    .ok_or_else(|| serde::de::Error::custom(format!("not a blake3 id: {s}")))
            }
        }
    };
}

hash_id!(
    /// The identity of a stage's recipe: what it would compute.
    RecipeKey
);
hash_id!(
    /// The identity of bytes: one output's files, or a whole object (all outputs of a stage).
    Digest
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Ids read back only in the form cfrun writes: lower-case hex, `blake3:` in records; the
    /// same bytes spelt otherwise are an edit, not the id.
    #[test]
    fn ids_parse_only_as_written() {
        let d = Digest([0xab; 32]);
        assert_eq!(Digest::parse(&d.to_string()), Some(d));
        assert_eq!(Digest::parse(&d.hex()), Some(d), "a file name");
        assert_eq!(Digest::parse(&d.hex().to_uppercase()), None);
        assert_eq!(Digest::parse(&d.hex()[2..]), None, "too short");
        let json = |s: &str| serde_json::from_value::<Digest>(serde_json::Value::from(s));
        assert_eq!(json(&d.to_string()).unwrap(), d);
        assert!(json(&d.hex()).is_err(), "a record's id carries its prefix");
        assert!(json(&d.to_string().replacen('a', "A", 1)).is_err());
    }
}
