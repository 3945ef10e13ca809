//! Structure-aware generators: JSON values biased towards what our parsers look at.

use arbitrary::{Result, Unstructured};
use fixrx_realtime::events::EventType;
use serde_json::{Map, Number, Value, json};

/// Keys the parsers look for, and a few that they must refuse.
pub const KEYS: &[&str] = &[
    "type",
    "id",
    "occurredAt",
    "actor",
    "role",
    "service",
    "booking",
    "payment",
    "userId",
    "vendorId",
    "previousStatus",
    "reason",
    "events",
    "to",
    "from",
    "text",
    "clientMsgId",
    "token",
    "sub",
    "exp",
    "nbf",
    "iat",
    "iss",
    "aud",
    "alg",
    "typ",
    "kid",
    "title",
    "status",
    "amount",
    "__proto__",
    "",
];

const WORDS: &[&str] = &[
    "service:created",
    "booking:status_changed",
    "payment:failed",
    "booking:deleted",
    "Booking:Created",
    "user",
    "vendor",
    "admin",
    "root",
    "User",
    "HS256",
    "HS512",
    "none",
    "None",
    "RS256",
    "ES256",
    "JWT",
    "fixrx",
    "app",
    "u1",
    "v1",
    "s1",
    "b1",
    "p1",
    "a\nb",
    "a\u{0}b",
    "\u{7f}",
    "\u{85}",
    "\u{200b}",
    "\u{202e}rtl",
    "\u{feff}",
    " ",
    "\t",
    "🦀",
    "1.5",
    "-1",
    "0",
    "1e3",
    "null",
    "true",
    "2026-11-25T10:00:00Z",
    "yesterday",
];

const CHARS: &[char] = &['x', 'é', '🦀', '\u{0}', '\n', ' ', '\u{85}', '\u{200b}', '中', 'a'];

/// Lengths at and around every limit the parsers enforce (64, 128, 1000, 4000).
const LENGTHS: &[usize] = &[0, 1, 2, 63, 64, 65, 127, 128, 129, 999, 1000, 1001, 3999, 4000, 4001];

pub fn string(u: &mut Unstructured) -> Result<String> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=2 => u.choose(WORDS)?.to_string(),
        3 | 4 => {
            let n = u.int_in_range(0usize..=40)?;
            let mut s = String::new();
            for _ in 0..n {
                s.push(char::arbitrary_char(u)?);
            }
            s
        }
        5 => {
            let c = *u.choose(CHARS)?;
            let n = if u.ratio(3u8, 4)? { *u.choose(LENGTHS)? } else { u.int_in_range(0usize..=5000)? };
            std::iter::repeat_n(c, n).collect()
        }
        6 | 7 => rfc3339(u)?,
        8 => u.choose(&EventType::ALL)?.as_str().to_owned(),
        _ => integer(u)?.to_string(),
    })
}

trait ArbitraryChar {
    fn arbitrary_char(u: &mut Unstructured) -> Result<char>;
}

impl ArbitraryChar for char {
    fn arbitrary_char(u: &mut Unstructured) -> Result<char> {
        Ok(match u.int_in_range(0u8..=3)? {
            0 => u.int_in_range(b' '..=b'~')? as char,
            1 => *u.choose(CHARS)?,
            _ => u.arbitrary::<char>()?,
        })
    }
}

pub fn integer(u: &mut Unstructured) -> Result<Number> {
    let now = jsonwebtoken::get_current_timestamp();
    Ok(match u.int_in_range(0u8..=6)? {
        0 => Number::from(*u.choose(&[0i64, 1, -1, i64::MIN, i64::MAX, 1 << 53, -(1 << 53)])?),
        1 => Number::from(*u.choose(&[u64::MAX, u64::MAX / 1000, 1u64 << 63, (1u64 << 63) - 1])?),
        2 => Number::from(now.saturating_add(u.int_in_range(0u64..=100_000)?)),
        3 => Number::from(now.saturating_sub(u.int_in_range(0u64..=100_000)?)),
        4 => Number::from(u.arbitrary::<u64>()?),
        _ => Number::from(u.arbitrary::<i64>()?),
    })
}

pub fn float(u: &mut Unstructured) -> Result<Value> {
    let now = jsonwebtoken::get_current_timestamp() as f64;
    let f = match u.int_in_range(0u8..=4)? {
        0 => *u.choose(&[0.5, -0.0, 1.5, -1.5, 1e300, -1e300, 1.8446744073709552e19, 9.3e18, f64::MIN_POSITIVE])?,
        1 => now + 600.5,
        2 => now - 600.5,
        _ => u.arbitrary::<f64>()?,
    };
    Ok(Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null))
}

/// An RFC 3339 date-time, mostly well formed, with edge years, leap seconds and
/// offsets that move the instant across the supported range.
pub fn rfc3339(u: &mut Unstructured) -> Result<String> {
    let year: i32 =
        if u.ratio(1u8, 2)? { *u.choose(&[0, 1, 1969, 1970, 2026, 9998, 9999])? } else { u.int_in_range(0..=9999)? };
    let month = if u.ratio(9u8, 10)? { u.int_in_range(1u8..=12)? } else { *u.choose(&[0u8, 13, 99])? };
    let day = if u.ratio(9u8, 10)? { *u.choose(&[1u8, 28, 29, 30, 31])? } else { u.int_in_range(0u8..=99)? };
    let hour = if u.ratio(9u8, 10)? { u.int_in_range(0u8..=23)? } else { *u.choose(&[24u8, 99])? };
    let minute = u.int_in_range(0u8..=59)?;
    let second = if u.ratio(9u8, 10)? { u.int_in_range(0u8..=59)? } else { *u.choose(&[60u8, 61, 99])? };
    let sep = *u.choose(&["T", "t", " ", "_"])?;
    let mut s = format!("{year:04}-{month:02}-{day:02}{sep}{hour:02}:{minute:02}:{second:02}");
    if u.ratio(1u8, 3)? {
        let digits = u.int_in_range(0usize..=12)?;
        s.push('.');
        for _ in 0..digits {
            s.push(char::from(b'0' + u.int_in_range(0u8..=9)?));
        }
    }
    match u.int_in_range(0u8..=4)? {
        0 => s.push('Z'),
        1 => s.push('z'),
        2 => {}
        _ => {
            let sign = if u.arbitrary()? { '+' } else { '-' };
            let oh = if u.ratio(9u8, 10)? { *u.choose(&[0u8, 1, 12, 14, 23])? } else { u.int_in_range(0u8..=99)? };
            let om = if u.ratio(9u8, 10)? { *u.choose(&[0u8, 30, 59])? } else { u.int_in_range(0u8..=99)? };
            s.push_str(&format!("{sign}{oh:02}:{om:02}"));
        }
    }
    Ok(s)
}

/// Any JSON value, at most `depth` levels deep.
pub fn value(u: &mut Unstructured, depth: u8) -> Result<Value> {
    let top = if depth == 0 { 5 } else { 7 };
    Ok(match u.int_in_range(0u8..=top)? {
        0 => Value::Null,
        1 => Value::Bool(u.arbitrary()?),
        2 => Value::Number(integer(u)?),
        3 => float(u)?,
        4 | 5 => Value::String(string(u)?),
        6 => {
            let n = u.int_in_range(0usize..=4)?;
            let mut items = Vec::with_capacity(n);
            for _ in 0..n {
                items.push(value(u, depth - 1)?);
            }
            Value::Array(items)
        }
        _ => {
            let n = u.int_in_range(0usize..=5)?;
            let mut map = Map::new();
            for _ in 0..n {
                map.insert(key(u)?, value(u, depth - 1)?);
            }
            Value::Object(map)
        }
    })
}

pub fn key(u: &mut Unstructured) -> Result<String> {
    if u.ratio(3u8, 4)? { Ok(u.choose(KEYS)?.to_string()) } else { string(u) }
}

/// Something in an id position: mostly a valid id, often one just past a limit.
pub fn id_value(u: &mut Unstructured) -> Result<Value> {
    Ok(match u.int_in_range(0u8..=9)? {
        0..=3 => json!(*u.choose(&["u1", "v1", "s1", "b1", "p1", "42", "é", "x y", "user:1"])?),
        4 => Value::Number(integer(u)?),
        5 | 6 => Value::String(string(u)?),
        _ => value(u, 1)?,
    })
}

/// An object with each of `keys` present or not (mostly present), plus extra fields.
fn object_with(
    u: &mut Unstructured,
    keys: &[&str],
    mut gen_value: impl FnMut(&mut Unstructured, &str) -> Result<Value>,
) -> Result<Map<String, Value>> {
    let mut map = Map::new();
    for k in keys {
        if u.ratio(7u8, 8)? {
            map.insert((*k).to_owned(), gen_value(u, k)?);
        }
    }
    let extra = u.int_in_range(0usize..=3)?;
    for _ in 0..extra {
        map.insert(key(u)?, value(u, 2)?);
    }
    Ok(map)
}

/// An event as a controller would POST it: mostly the right shape, with every field
/// sometimes wrong, missing, null, or at a limit.
pub fn event(u: &mut Unstructured) -> Result<Value> {
    let event_type = u.choose(&EventType::ALL)?.as_str();
    let entity = event_type.split(':').next().unwrap_or_default();
    let mut obj = Map::new();
    obj.insert("type".into(), if u.ratio(15u8, 16)? { json!(event_type) } else { value(u, 1)? });
    let entity_key = if u.ratio(15u8, 16)? { entity.to_owned() } else { key(u)? };
    let entity_value = if u.ratio(15u8, 16)? {
        Value::Object(object_with(u, &["id", "userId", "vendorId"], |u, _| id_value(u))?)
    } else {
        value(u, 2)?
    };
    obj.insert(entity_key, entity_value);
    if u.ratio(1u8, 3)? {
        obj.insert("id".into(), id_value(u)?);
    }
    if u.ratio(1u8, 2)? {
        let t = if u.ratio(7u8, 8)? { json!(rfc3339(u)?) } else { value(u, 1)? };
        obj.insert("occurredAt".into(), t);
    }
    if u.ratio(1u8, 3)? {
        let actor = if u.ratio(7u8, 8)? {
            Value::Object(object_with(u, &["id", "role"], |u, k| if k == "id" { id_value(u) } else { text_value(u) })?)
        } else {
            value(u, 2)?
        };
        obj.insert("actor".into(), actor);
    }
    for k in ["previousStatus", "reason"] {
        if u.ratio(1u8, 3)? {
            obj.insert(k.into(), text_value(u)?);
        }
    }
    if u.ratio(1u8, 8)? {
        obj.insert(key(u)?, value(u, 2)?);
    }
    Ok(Value::Object(obj))
}

/// A free-text field (`reason`, `role`, chat `text`): a string around its limit, or not a string.
pub fn text_value(u: &mut Unstructured) -> Result<Value> {
    Ok(if u.ratio(7u8, 8)? { Value::String(string(u)?) } else { value(u, 1)? })
}

/// `{ "type": "user" | "vendor", "id" }`, or something else in its place.
pub fn party(u: &mut Unstructured) -> Result<Value> {
    Ok(if u.ratio(7u8, 8)? {
        Value::Object(object_with(u, &["type", "id"], |u, k| {
            if k == "id" {
                id_value(u)
            } else if u.ratio(7u8, 8)? {
                Ok(json!(*u.choose(&["user", "vendor", "admin", "User", ""])?))
            } else {
                value(u, 1)
            }
        })?)
    } else {
        value(u, 2)?
    })
}

/// A chat payload `{ to, text, clientMsgId? }` (and `from`, as the REST API takes it).
pub fn chat(u: &mut Unstructured) -> Result<Value> {
    if u.ratio(1u8, 16)? {
        return value(u, 3);
    }
    let mut obj = Map::new();
    if u.ratio(7u8, 8)? {
        obj.insert("to".into(), party(u)?);
    }
    if u.ratio(1u8, 2)? {
        obj.insert("from".into(), party(u)?);
    }
    if u.ratio(7u8, 8)? {
        obj.insert("text".into(), text_value(u)?);
    }
    if u.ratio(1u8, 2)? {
        let id = match u.int_in_range(0u8..=3)? {
            0 => Value::Number(integer(u)?),
            1 => value(u, 1)?,
            _ => Value::String(string(u)?),
        };
        obj.insert("clientMsgId".into(), id);
    }
    if u.ratio(1u8, 4)? {
        obj.insert(key(u)?, value(u, 2)?);
    }
    Ok(Value::Object(obj))
}
