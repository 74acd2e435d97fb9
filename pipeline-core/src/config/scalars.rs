//! Reading typed configs out of their JSON values, with one leniency: a field typed as a
//! string takes a number or a boolean as the text it was written as.
//!
//! A value that is one `${env:VAR}` reference alone takes the variable's YAML type (so
//! `port: ${env:PORT}` is a number), but only when the number or boolean prints back as the
//! exact text of the variable (see `substitute_value`); so when the field it lands in is a
//! string (a header, an API key, a path), [`ConfigValue`] hands the field that text, and a
//! numeric API key is read as the string it was instead of failing with a message that
//! quotes it. Every component config and the `service` section are read through it.

use serde::Deserialize;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};
use serde_json::{Map, Value};

type Error = serde_json::Error;

/// A [`Deserializer`] over a config value that gives string fields numbers and booleans as
/// their text; everything else reads as from the [`Value`] itself.
#[derive(Debug, Clone, Copy)]
pub struct ConfigValue<'a>(pub &'a Value);

/// The text of a scalar a string field may take, if the value is one.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn visit_array<'de, V: Visitor<'de>>(items: &'de [Value], visitor: V) -> Result<V::Value, Error> {
    let mut seq = Seq {
        items: items.iter(),
    };
    let out = visitor.visit_seq(&mut seq)?;
    match seq.items.len() {
        0 => Ok(out),
        _ => Err(de::Error::invalid_length(
            items.len(),
            &"fewer elements in the list",
        )),
    }
}

fn visit_object<'de, V: Visitor<'de>>(
    map: &'de Map<String, Value>,
    visitor: V,
) -> Result<V::Value, Error> {
    visitor.visit_map(Entries {
        entries: map.iter(),
        value: None,
    })
}

/// Methods that read a scalar the same way the [`Value`] itself does.
macro_rules! as_the_value_does {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                self.0.$method(visitor)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for ConfigValue<'de> {
    type Error = Error;

    as_the_value_does! {
        deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_f32
        deserialize_f64 deserialize_char deserialize_bytes deserialize_byte_buf
        deserialize_unit deserialize_identifier
    }

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visit_array(items, visitor),
            Value::Object(map) => visit_object(map, visitor),
            scalar => scalar.deserialize_any(visitor),
        }
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match scalar_text(self.0) {
            Some(text) => visitor.visit_string(text),
            None => self.0.deserialize_str(visitor),
        }
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Array(items) => visit_array(items, visitor),
            other => other.deserialize_seq(visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visit_object(map, visitor),
            other => other.deserialize_map(visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) => visit_object(map, visitor),
            Value::Array(items) => visit_array(items, visitor),
            other => other.deserialize_struct(name, fields, visitor),
        }
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self.0 {
            Value::Object(map) if map.len() == 1 => match map.iter().next() {
                Some((variant, value)) => visitor.visit_enum(Variant {
                    name: variant,
                    value,
                }),
                None => self.0.deserialize_enum(name, variants, visitor),
            },
            other => other.deserialize_enum(name, variants, visitor),
        }
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.0.deserialize_unit_struct(name, visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

/// The items of a list, each read as a [`ConfigValue`].
struct Seq<'de> {
    items: std::slice::Iter<'de, Value>,
}

impl<'de> SeqAccess<'de> for Seq<'de> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        self.items
            .next()
            .map(|item| seed.deserialize(ConfigValue(item)))
            .transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// The entries of a map, the values read as [`ConfigValue`]s.
struct Entries<'de> {
    entries: serde_json::map::Iter<'de>,
    value: Option<&'de Value>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        match self.entries.next() {
            Some((key, value)) => {
                self.value = Some(value);
                seed.deserialize(BorrowedStrDeserializer::new(key))
                    .map(Some)
            }
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.value.take() {
            Some(value) => seed.deserialize(ConfigValue(value)),
            None => Err(de::Error::custom(
                "a map value was asked for before its key",
            )),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// An enum written as `{variant: value}`.
struct Variant<'de> {
    name: &'de str,
    value: &'de Value,
}

impl<'de> EnumAccess<'de> for Variant<'de> {
    type Error = Error;
    type Variant = ConfigValue<'de>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, ConfigValue<'de>), Error> {
        let variant = seed.deserialize(BorrowedStrDeserializer::new(self.name))?;
        Ok((variant, ConfigValue(self.value)))
    }
}

impl<'de> VariantAccess<'de> for ConfigValue<'de> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        IgnoredAny::deserialize(self).map(|_| ())
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_struct("", fields, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    use serde::Deserialize;
    use serde_json::json;

    use super::ConfigValue;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        key: String,
        port: u16,
        enabled: bool,
        #[serde(default)]
        headers: BTreeMap<String, String>,
        #[serde(default)]
        path: Option<PathBuf>,
        #[serde(default)]
        list: Vec<String>,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        raw: serde_json::Value,
    }

    #[derive(Debug, Default, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        #[default]
        Fast,
        Slow,
    }

    fn read(value: serde_json::Value) -> Result<Sample, serde_json::Error> {
        Sample::deserialize(ConfigValue(&value))
    }

    #[test]
    fn string_fields_take_numbers_and_booleans_as_their_text() {
        let s = read(json!({
            "key": 12_345_678_901_u64, "port": 4317, "enabled": true,
            "headers": {"x-api-key": 987_654, "x-flag": false},
            "path": 2024, "list": [1, "two", 3.5], "mode": "slow",
            "raw": {"a": [1, {"b": null}]}
        }))
        .unwrap();
        assert_eq!(s.key, "12345678901");
        assert_eq!(s.port, 4317);
        assert_eq!(s.headers["x-api-key"], "987654");
        assert_eq!(s.headers["x-flag"], "false");
        assert_eq!(s.path, Some(PathBuf::from("2024")));
        assert_eq!(s.list, ["1", "two", "3.5"]);
        assert_eq!(s.mode, Mode::Slow);
        assert_eq!(s.raw, json!({"a": [1, {"b": null}]}));
    }

    #[test]
    fn other_types_stay_strict() {
        let e = read(json!({"key": "k", "port": "4317", "enabled": true})).unwrap_err();
        assert!(e.to_string().contains("expected u16"), "{e}");
        let e = read(json!({"key": "k", "port": 1, "enabled": 1})).unwrap_err();
        assert!(e.to_string().contains("expected a boolean"), "{e}");
        let e = read(json!({"key": "k", "port": 1, "enabled": true, "extra": 1})).unwrap_err();
        assert!(e.to_string().contains("unknown field `extra`"), "{e}");
        let e =
            read(json!({"key": "k", "port": 1, "enabled": true, "mode": "medium"})).unwrap_err();
        assert!(e.to_string().contains("unknown variant `medium`"), "{e}");
        let e = read(json!({"key": {"a": 1}, "port": 1, "enabled": true})).unwrap_err();
        assert!(e.to_string().contains("invalid type: map"), "{e}");
    }
}
