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

            /// Parses `blake3:<hex>` or bare hex.
            pub fn parse(s: &str) -> Option<Self> {
                let hex_part = s.strip_prefix("blake3:").unwrap_or(s);
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
                Self::parse(&s).ok_or_else(|| serde::de::Error::custom(format!("not a blake3 id: {s}")))
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
