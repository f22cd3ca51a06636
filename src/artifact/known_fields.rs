//! The fields serde reads for a struct, so that JSON written by someone else's code is checked
//! against them: serde skips an unknown key without a word, and a misspelt optional field
//! (`class_name` for `class_names`) would be lost rather than refused.

use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The names of the fields `T` reads, as serde declares them (renames applied); empty when `T`
/// is not a struct.
pub fn field_names<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields: &'static [&'static str] = &[];
    // The deserializer fails on purpose once it has the names: nothing is built.
    let _ = T::deserialize(Names(&mut fields));
    fields
}

/// The first key of `object` that is not one of `fields`.
pub fn unknown_key<'a>(object: &'a serde_json::Value, fields: &[&str]) -> Option<&'a str> {
    object.as_object()?.keys().map(String::as_str).find(|k| !fields.contains(k))
}

/// A deserializer that only records the field list a struct asks it for.
struct Names<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for Names<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("field names only"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
        unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::{ImagesMeta, LabelsMeta};

    #[test]
    fn the_names_are_the_structs_fields_optional_ones_included() {
        assert_eq!(field_names::<LabelsMeta>(), ["num_classes", "class_names", "source", "tag_classes"]);
        assert!(field_names::<ImagesMeta>().contains(&"frames"), "a field skipped when 1 is still read");
        assert!(field_names::<Vec<u32>>().is_empty());
        let v = serde_json::json!({"num_classes": 2, "class_name": ["a", "b"], "source": "x"});
        assert_eq!(unknown_key(&v, field_names::<LabelsMeta>()), Some("class_name"));
        assert_eq!(unknown_key(&serde_json::json!([1]), &["a"]), None);
    }
}
