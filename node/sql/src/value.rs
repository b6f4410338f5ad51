//! SQL values and types: NULL, BIGINT/INTEGER, NUMERIC, REAL/DOUBLE PRECISION, TEXT/VARCHAR,
//! BOOLEAN, BYTEA and TIMESTAMP, with casts, comparison and PostgreSQL-style text output.

use crate::decimal::Decimal;
use crate::error::{Result, SqlError};
use crate::float;
use std::cmp::Ordering;

/// A declared SQL type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SqlType {
    /// 64-bit integer (BIGINT, INT8).
    BigInt,
    /// 32-bit range-checked integer (INTEGER, INT, INT4, SMALLINT).
    Integer,
    /// Exact decimal; `Some((p, s))` when constrained.
    Numeric(Option<(u32, u32)>),
    /// IEEE binary32 (REAL, FLOAT4, FLOAT(1..24)).
    Real,
    /// IEEE binary64 (DOUBLE PRECISION, FLOAT8, FLOAT, FLOAT(25..53)).
    Double,
    /// Text; `Some(n)` for VARCHAR(n).
    Text(Option<u32>),
    /// BOOLEAN.
    Boolean,
    /// BYTEA.
    Bytea,
    /// TIMESTAMP (seconds since the Unix epoch, no time zone).
    Timestamp,
    /// Type of a bare NULL literal or not yet known.
    Unknown,
    /// Only as a function return type.
    Void,
    /// A one-dimensional array (`INT[]`, `BIGINT[]`, `TEXT[]`): variables, parameters,
    /// results and expressions only, never a table column.
    Array(ArrElem),
}

/// Element type of an array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrElem {
    /// INTEGER (range-checked to i32).
    Integer,
    /// BIGINT.
    BigInt,
    /// TEXT.
    Text,
}

impl ArrElem {
    /// The element type as a scalar type.
    pub fn ty(self) -> SqlType {
        match self {
            ArrElem::Integer => SqlType::Integer,
            ArrElem::BigInt => SqlType::BigInt,
            ArrElem::Text => SqlType::Text(None),
        }
    }

    /// The array element type for a scalar type, if arrays of it are supported.
    pub fn of(t: SqlType) -> Option<ArrElem> {
        match t {
            SqlType::Integer => Some(ArrElem::Integer),
            SqlType::BigInt => Some(ArrElem::BigInt),
            SqlType::Text(_) => Some(ArrElem::Text),
            _ => None,
        }
    }
}

/// Most elements an array may hold ([`crate::gas::ARRAY_ELEM`] is charged per element an
/// operation builds or copies; building a longer one is an error).
pub const MAX_ARRAY_LEN: usize = 10_000;

/// Most bytes of element text an array may hold (each element is copied when an array is
/// rebuilt, so this bounds the memory one array holds; [`crate::gas::PER_KB`] is charged per
/// whole KiB of element text an operation builds).
pub const MAX_ARRAY_TEXT: usize = 1 << 20;

/// An array value: its element type and elements (one dimension, subscripts from 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Array {
    /// Element type.
    pub elem: ArrElem,
    /// Elements (each NULL or of the element type).
    pub items: Vec<Value>,
}

/// The error for an array over [`MAX_ARRAY_LEN`] elements.
pub fn array_too_long(n: usize) -> SqlError {
    SqlError::Overflow(format!(
        "array size exceeds the maximum allowed ({MAX_ARRAY_LEN}): {n} elements"
    ))
}

impl Array {
    /// A new array, its length checked against [`MAX_ARRAY_LEN`] and its element text
    /// against [`MAX_ARRAY_TEXT`].
    pub fn new(elem: ArrElem, items: Vec<Value>) -> Result<Array> {
        if items.len() > MAX_ARRAY_LEN {
            return Err(array_too_long(items.len()));
        }
        let a = Array { elem, items };
        let text = a.text_bytes();
        if text > MAX_ARRAY_TEXT {
            return Err(SqlError::Overflow(format!(
                "array size exceeds the maximum allowed ({MAX_ARRAY_TEXT} bytes of element \
                 text): {text} bytes"
            )));
        }
        Ok(a)
    }

    /// Bytes of the elements' text.
    pub fn text_bytes(&self) -> usize {
        self.items
            .iter()
            .map(|v| match v {
                Value::Text(s) => s.len(),
                _ => 0,
            })
            .sum()
    }

    /// PostgreSQL's text form: `{1,2,NULL}`, `{a,"b c","\"q\""}`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("{");
        for (i, v) in self.items.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            match v {
                Value::Null => s.push_str("NULL"),
                v => {
                    let t = v.to_text();
                    let quote = t.is_empty()
                        || t.eq_ignore_ascii_case("null")
                        || t.chars().any(|c| {
                            matches!(c, '{' | '}' | ',' | '"' | '\\') || c.is_ascii_whitespace()
                        });
                    if quote {
                        s.push('"');
                        for c in t.chars() {
                            if c == '"' || c == '\\' {
                                s.push('\\');
                            }
                            s.push(c);
                        }
                        s.push('"');
                    } else {
                        s.push_str(&t);
                    }
                }
            }
        }
        s.push('}');
        s
    }

    /// Parses PostgreSQL's text form of a one-dimensional array (`{1, 2, NULL}`, quoted
    /// elements with backslash escapes), each element cast to `elem`.
    pub fn parse(text: &str, elem: ArrElem) -> Result<Array> {
        let bad = |why: &str| type_err(format!("malformed array literal: \"{text}\" ({why})"));
        let t = text.trim();
        let Some(body) = t.strip_prefix('{').and_then(|b| b.strip_suffix('}')) else {
            return Err(bad("array value must start with \"{\" and end with \"}\""));
        };
        let mut items = Vec::new();
        let mut chars = body.chars().peekable();
        if body.trim().is_empty() {
            return Array::new(elem, items);
        }
        loop {
            while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                chars.next();
            }
            let mut cur = String::new();
            let mut quoted = false;
            if chars.peek() == Some(&'"') {
                quoted = true;
                chars.next();
                loop {
                    match chars.next() {
                        None => return Err(bad("unexpected end of input")),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c) => cur.push(c),
                            None => return Err(bad("unexpected end of input")),
                        },
                        Some(c) => cur.push(c),
                    }
                }
                while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
                    chars.next();
                }
            } else {
                while let Some(&c) = chars.peek() {
                    if c == ',' {
                        break;
                    }
                    if matches!(c, '{' | '}' | '"') {
                        return Err(bad(if c == '{' {
                            "multidimensional arrays are not supported"
                        } else {
                            "unexpected character"
                        }));
                    }
                    chars.next();
                    if c == '\\' {
                        match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err(bad("unexpected end of input")),
                        }
                    } else {
                        cur.push(c);
                    }
                }
                let trimmed = cur.trim_end().to_string();
                cur = trimmed;
                if cur.is_empty() {
                    return Err(bad("unexpected \",\""));
                }
            }
            let v = if !quoted && cur.eq_ignore_ascii_case("null") {
                Value::Null
            } else {
                Value::Text(cur).cast(&elem.ty())?
            };
            items.push(v);
            if items.len() > MAX_ARRAY_LEN {
                return Err(array_too_long(items.len()));
            }
            match chars.next() {
                None => break,
                Some(',') => continue,
                Some(_) => return Err(bad("junk after closing double quote")),
            }
        }
        Array::new(elem, items)
    }
}

impl SqlType {
    /// True for BIGINT/INTEGER/NUMERIC/REAL/DOUBLE PRECISION.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            SqlType::BigInt
                | SqlType::Integer
                | SqlType::Numeric(_)
                | SqlType::Real
                | SqlType::Double
        )
    }

    /// PostgreSQL's name of the type as its error messages spell it (`text`, `bigint`,
    /// `double precision`, …); `Display` keeps the upper-case names of the ABI.
    pub fn pg_name(&self) -> String {
        match self {
            SqlType::Numeric(_) => "numeric".into(),
            SqlType::Text(None) => "text".into(),
            SqlType::Text(Some(_)) => "character varying".into(),
            SqlType::Timestamp => "timestamp without time zone".into(),
            SqlType::Unknown => "unknown".into(),
            SqlType::Array(e) => format!("{}[]", e.ty().pg_name()),
            t => t.to_string().to_ascii_lowercase(),
        }
    }

    /// True for REAL/DOUBLE PRECISION.
    pub fn is_float(&self) -> bool {
        matches!(self, SqlType::Real | SqlType::Double)
    }
}

impl std::fmt::Display for SqlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SqlType::BigInt => write!(f, "BIGINT"),
            SqlType::Integer => write!(f, "INTEGER"),
            SqlType::Numeric(None) => write!(f, "NUMERIC"),
            SqlType::Numeric(Some((p, s))) => write!(f, "NUMERIC({p},{s})"),
            SqlType::Real => write!(f, "REAL"),
            SqlType::Double => write!(f, "DOUBLE PRECISION"),
            SqlType::Text(None) => write!(f, "TEXT"),
            SqlType::Text(Some(n)) => write!(f, "VARCHAR({n})"),
            SqlType::Boolean => write!(f, "BOOLEAN"),
            SqlType::Bytea => write!(f, "BYTEA"),
            SqlType::Timestamp => write!(f, "TIMESTAMP"),
            SqlType::Unknown => write!(f, "UNKNOWN"),
            SqlType::Void => write!(f, "VOID"),
            SqlType::Array(e) => write!(f, "{}[]", e.ty()),
        }
    }
}

/// A runtime SQL value.
#[derive(Debug, Clone)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// Integer.
    Int(i64),
    /// Exact decimal.
    Num(Decimal),
    /// DOUBLE PRECISION (any NaN is the canonical one).
    Float(f64),
    /// REAL (any NaN is the canonical one).
    Real(f32),
    /// Boolean.
    Bool(bool),
    /// Timestamp in seconds since the Unix epoch.
    Ts(i64),
    // The variants that own memory come last and together, so dropping a value of another
    // kind is one comparison (a transfer drops a few dozen values).
    /// Text.
    Text(String),
    /// Bytes.
    Bytes(Vec<u8>),
    /// A one-dimensional array (shared: copying the value copies no elements).
    Array(ArrayRef),
}

/// A shared array value. Its reference is released out of line, so the code that drops a
/// `Value` stays as small as it was before arrays (the compiler keeps inlining it on the
/// contract-call path).
#[derive(Debug)]
pub struct ArrayRef(std::mem::ManuallyDrop<std::sync::Arc<Array>>);

impl ArrayRef {
    /// A new shared array.
    pub fn new(a: Array) -> ArrayRef {
        ArrayRef(std::mem::ManuallyDrop::new(std::sync::Arc::new(a)))
    }

    /// The array, without copying the elements when this is its only reference.
    pub fn into_array(self) -> Array {
        let this = std::mem::ManuallyDrop::new(self);
        // SAFETY: `this` is never dropped (ManuallyDrop), so the Arc read out of it is
        // released exactly once: by the `try_unwrap` below or the clone's drop.
        let arc = unsafe { std::ptr::read(&*this.0) };
        std::sync::Arc::try_unwrap(arc).unwrap_or_else(|a| (*a).clone())
    }
}

impl Clone for ArrayRef {
    fn clone(&self) -> ArrayRef {
        ArrayRef(std::mem::ManuallyDrop::new(std::sync::Arc::clone(&self.0)))
    }
}

impl Drop for ArrayRef {
    #[inline(never)]
    fn drop(&mut self) {
        // SAFETY: the Arc is only ever released here (or moved out by `into_array`, which
        // never runs this drop), once, when the `ArrayRef` itself is dropped.
        unsafe { std::mem::ManuallyDrop::drop(&mut self.0) }
    }
}

impl std::ops::Deref for ArrayRef {
    type Target = Array;
    fn deref(&self) -> &Array {
        &self.0
    }
}

impl PartialEq for Value {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Value::Null, Value::Null) => true,
            _ => matches!(sql_cmp(self, other), Ok(Some(Ordering::Equal))),
        }
    }
}

fn type_err(msg: String) -> SqlError {
    SqlError::Type(msg)
}

/// Days since 1970-01-01 for a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Parses `YYYY-MM-DD[ HH:MM:SS]` into epoch seconds.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    let bad = || type_err(format!("invalid input syntax for type timestamp: \"{s}\""));
    let t = s.trim();
    let (date, time) = match t.split_once([' ', 'T']) {
        Some((a, b)) => (a, b.trim()),
        None => (t, ""),
    };
    let mut dp = date.split('-');
    let y: i64 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let mo: i64 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    let d: i64 = dp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
    if dp.next().is_some()
        || !(1..=9999).contains(&y)
        || !(1..=12).contains(&mo)
        || !(1..=31).contains(&d)
    {
        return Err(bad());
    }
    let (mut hh, mut mm, mut ss) = (0i64, 0i64, 0i64);
    if !time.is_empty() {
        let mut tp = time.split(':');
        hh = tp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        mm = tp.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        ss = match tp.next() {
            Some(x) => x.parse().map_err(|_| bad())?,
            None => 0,
        };
        if tp.next().is_some()
            || !(0..24).contains(&hh)
            || !(0..60).contains(&mm)
            || !(0..60).contains(&ss)
        {
            return Err(bad());
        }
    }
    Ok(days_from_civil(y, mo, d) * 86400 + hh * 3600 + mm * 60 + ss)
}

/// Formats epoch seconds as `YYYY-MM-DD HH:MM:SS`.
pub fn format_timestamp(t: i64) -> String {
    let days = t.div_euclid(86400);
    let secs = t.rem_euclid(86400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

impl Value {
    /// True for NULL.
    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The value's dynamic type.
    pub fn type_of(&self) -> SqlType {
        match self {
            Value::Null => SqlType::Unknown,
            Value::Int(_) => SqlType::BigInt,
            Value::Num(_) => SqlType::Numeric(None),
            Value::Float(_) => SqlType::Double,
            Value::Real(_) => SqlType::Real,
            Value::Text(_) => SqlType::Text(None),
            Value::Bool(_) => SqlType::Boolean,
            Value::Bytes(_) => SqlType::Bytea,
            Value::Ts(_) => SqlType::Timestamp,
            Value::Array(a) => SqlType::Array(a.elem),
        }
    }

    /// Converts to a decimal if numeric.
    pub fn as_decimal(&self) -> Option<Decimal> {
        match self {
            Value::Int(i) => Some(Decimal::from_i64(*i)),
            Value::Num(d) => Some(*d),
            _ => None,
        }
    }

    /// The value as DOUBLE PRECISION if numeric (integers and decimals correctly rounded,
    /// REAL widened exactly).
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            // IEEE conversion: round to nearest, ties to even
            Value::Int(i) => Some(*i as f64),
            Value::Num(d) => Some(float::from_decimal64(d)),
            Value::Float(x) => Some(*x),
            Value::Real(x) => Some(f64::from(*x)),
            _ => None,
        }
    }

    /// Like [`Value::cast`], but moves the value when it already has the
    /// target type (no copy of text or bytes).
    #[inline]
    pub fn cast_owned(self, ty: &SqlType) -> Result<Value> {
        match (&self, ty) {
            (Value::Null, _)
            | (_, SqlType::Unknown | SqlType::Void)
            | (Value::Int(_), SqlType::BigInt)
            | (Value::Num(_), SqlType::Numeric(None))
            | (Value::Float(_), SqlType::Double)
            | (Value::Real(_), SqlType::Real)
            | (Value::Text(_), SqlType::Text(None))
            | (Value::Bool(_), SqlType::Boolean)
            | (Value::Bytes(_), SqlType::Bytea)
            | (Value::Ts(_), SqlType::Timestamp) => Ok(self),
            (Value::Array(a), SqlType::Array(e)) if a.elem == *e => Ok(self),
            _ => self.cast(ty),
        }
    }

    /// Casts (and checks constraints of) a value to a declared type.
    pub fn cast(&self, ty: &SqlType) -> Result<Value> {
        if self.is_null() {
            return Ok(Value::Null);
        }
        match ty {
            SqlType::Unknown | SqlType::Void => Ok(self.clone()),
            SqlType::BigInt | SqlType::Integer => {
                let v = match self {
                    Value::Int(i) => *i,
                    Value::Num(d) => d.to_i64_round()?,
                    Value::Float(_) | Value::Real(_) => {
                        let x = self.as_f64().unwrap_or(f64::NAN);
                        if *ty == SqlType::Integer {
                            float::to_int(x, i64::from(i32::MIN), i64::from(i32::MAX), "integer")?
                        } else {
                            float::to_int(x, i64::MIN, i64::MAX, "bigint")?
                        }
                    }
                    Value::Text(s) => s.trim().parse::<i64>().map_err(|_| {
                        type_err(format!("invalid input syntax for type bigint: \"{s}\""))
                    })?,
                    Value::Bool(b) => i64::from(*b),
                    other => {
                        return Err(type_err(format!("cannot cast {} to {ty}", other.type_of())))
                    }
                };
                if *ty == SqlType::Integer && i32::try_from(v).is_err() {
                    return Err(SqlError::Overflow("integer out of range".into()));
                }
                Ok(Value::Int(v))
            }
            SqlType::Numeric(c) => {
                let d = match self {
                    Value::Int(i) => Decimal::from_i64(*i),
                    Value::Num(d) => *d,
                    Value::Float(x) => float::to_decimal(*x, 15)?,
                    Value::Real(x) => float::to_decimal(f64::from(*x), 6)?,
                    Value::Text(s) => Decimal::parse(s)?,
                    other => {
                        return Err(type_err(format!("cannot cast {} to {ty}", other.type_of())))
                    }
                };
                Ok(Value::Num(match c {
                    Some((p, s)) => d.fit(*p, *s)?,
                    None => d,
                }))
            }
            SqlType::Double => Ok(Value::Float(match self {
                Value::Text(s) => float::parse64(s)?,
                other => match other.as_f64() {
                    Some(x) => float::canon64(x),
                    None => {
                        return Err(type_err(format!("cannot cast {} to {ty}", other.type_of())))
                    }
                },
            })),
            SqlType::Real => Ok(Value::Real(match self {
                Value::Text(s) => float::parse32(s)?,
                Value::Real(x) => *x,
                // IEEE conversion, correctly rounded
                #[allow(clippy::cast_precision_loss)]
                Value::Int(i) => *i as f32,
                Value::Num(d) => float::from_decimal32(d),
                Value::Float(x) => float::to_f32(*x)?,
                other => return Err(type_err(format!("cannot cast {} to {ty}", other.type_of()))),
            })),
            SqlType::Text(n) => {
                let s = self.to_text_cast();
                if let Some(n) = n {
                    if s.chars().count() > *n as usize {
                        return Err(SqlError::Constraint(format!(
                            "value too long for type character varying({n})"
                        )));
                    }
                }
                Ok(Value::Text(s))
            }
            SqlType::Boolean => match self {
                Value::Bool(b) => Ok(Value::Bool(*b)),
                Value::Int(i) => Ok(Value::Bool(*i != 0)),
                Value::Text(s) => match s.trim().to_ascii_lowercase().as_str() {
                    "t" | "true" | "yes" | "on" | "1" => Ok(Value::Bool(true)),
                    "f" | "false" | "no" | "off" | "0" => Ok(Value::Bool(false)),
                    _ => Err(type_err(format!(
                        "invalid input syntax for type boolean: \"{s}\""
                    ))),
                },
                other => Err(type_err(format!("cannot cast {} to {ty}", other.type_of()))),
            },
            SqlType::Bytea => match self {
                Value::Bytes(b) => Ok(Value::Bytes(b.clone())),
                Value::Text(s) => match s.strip_prefix("\\x") {
                    Some(h) => hex_decode(h)
                        .map(Value::Bytes)
                        .ok_or_else(|| type_err(format!("invalid hex bytea: \"{s}\""))),
                    None => Ok(Value::Bytes(s.as_bytes().to_vec())),
                },
                other => Err(type_err(format!("cannot cast {} to {ty}", other.type_of()))),
            },
            SqlType::Timestamp => match self {
                Value::Ts(t) => Ok(Value::Ts(*t)),
                Value::Text(s) => Ok(Value::Ts(parse_timestamp(s)?)),
                other => Err(type_err(format!("cannot cast {} to {ty}", other.type_of()))),
            },
            SqlType::Array(e) => match self {
                Value::Array(a) if a.elem == *e => Ok(self.clone()),
                Value::Array(a) => {
                    let items = a
                        .items
                        .iter()
                        .map(|v| v.cast(&e.ty()))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Value::Array(ArrayRef::new(Array::new(*e, items)?)))
                }
                Value::Text(s) => Ok(Value::Array(ArrayRef::new(Array::parse(s, *e)?))),
                other => Err(type_err(format!("cannot cast {} to {ty}", other.type_of()))),
            },
        }
    }

    /// Text produced by a cast to TEXT (and by `||`): like [`Value::to_text`]
    /// except that booleans become `true`/`false`, as in PostgreSQL.
    pub fn to_text_cast(&self) -> String {
        match self {
            Value::Bool(b) => (if *b { "true" } else { "false" }).to_string(),
            v => v.to_text(),
        }
    }

    /// PostgreSQL text output (NULL prints as an empty string here; callers
    /// decide how to show NULL).
    pub fn to_text(&self) -> String {
        match self {
            Value::Null => String::new(),
            Value::Int(i) => i.to_string(),
            Value::Num(d) => d.to_string(),
            Value::Float(x) => float::format64(*x),
            Value::Real(x) => float::format32(*x),
            Value::Text(s) => s.clone(),
            Value::Bool(b) => (if *b { "t" } else { "f" }).to_string(),
            Value::Bytes(b) => {
                let mut s = String::from("\\x");
                for x in b {
                    s.push_str(&format!("{x:02x}"));
                }
                s
            }
            Value::Ts(t) => format_timestamp(*t),
            Value::Array(a) => a.to_text(),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Null => f.write_str("NULL"),
            v => f.write_str(&v.to_text()),
        }
    }
}

/// Three-valued comparison: `Ok(None)` when either side is NULL.
pub fn sql_cmp(a: &Value, b: &Value) -> Result<Option<Ordering>> {
    Ok(Some(match (a, b) {
        (Value::Null, _) | (_, Value::Null) => return Ok(None),
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        // any float: compare as DOUBLE PRECISION (as PostgreSQL), NaN greatest, -0 = 0
        (
            Value::Float(_) | Value::Real(_),
            Value::Int(_) | Value::Num(_) | Value::Float(_) | Value::Real(_),
        )
        | (Value::Int(_) | Value::Num(_), Value::Float(_) | Value::Real(_)) => {
            match (a.as_f64(), b.as_f64()) {
                (Some(x), Some(y)) => float::cmp64(x, y),
                _ => return Err(type_err("numeric comparison".into())),
            }
        }
        (Value::Int(_) | Value::Num(_), Value::Int(_) | Value::Num(_)) => {
            let (x, y) = (a.as_decimal(), b.as_decimal());
            match (x, y) {
                (Some(x), Some(y)) => x.cmp_num(&y),
                _ => return Err(type_err("numeric comparison".into())),
            }
        }
        (Value::Text(x), Value::Text(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Bytes(x), Value::Bytes(y)) => x.cmp(y),
        (Value::Ts(x), Value::Ts(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => return array_cmp(&x.items, &y.items),
        // an untyped string literal against a typed value: cast the text
        (Value::Text(_), other) => return sql_cmp(&a.cast(&other.type_of())?, b),
        (other, Value::Text(_)) => return sql_cmp(a, &b.cast(&other.type_of())?),
        _ => {
            return Err(type_err(format!(
                "cannot compare {} with {}",
                a.type_of(),
                b.type_of()
            )))
        }
    }))
}

/// PostgreSQL's array comparison: element by element (a NULL element equals a NULL and
/// sorts after any value), then the shorter array first; never NULL itself.
fn array_cmp(x: &[Value], y: &[Value]) -> Result<Option<Ordering>> {
    for (a, b) in x.iter().zip(y) {
        let o = match (a.is_null(), b.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => sql_cmp(a, b)?.unwrap_or(Ordering::Equal),
        };
        if o != Ordering::Equal {
            return Ok(Some(o));
        }
    }
    Ok(Some(x.len().cmp(&y.len())))
}

/// Total order for sorting (NULL placement is decided by the caller).
pub fn sort_cmp(a: &Value, b: &Value) -> Ordering {
    match (a, b) {
        (Value::Null, Value::Null) => Ordering::Equal,
        (Value::Null, _) => Ordering::Greater,
        (_, Value::Null) => Ordering::Less,
        _ => match sql_cmp(a, b) {
            Ok(Some(o)) => o,
            _ => a.to_text().cmp(&b.to_text()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_and_timestamps() {
        let t = parse_timestamp("2024-02-29 13:05:09").unwrap();
        assert_eq!(format_timestamp(t), "2024-02-29 13:05:09");
        assert_eq!(parse_timestamp("1970-01-01").unwrap(), 0);
        assert!(parse_timestamp("2024-13-01").is_err());
        assert!(parse_timestamp("99999999999999-01-01").is_err());
        assert_eq!(
            Value::Text("12.345".into())
                .cast(&SqlType::Numeric(Some((5, 2))))
                .unwrap()
                .to_text(),
            "12.35"
        );
        assert!(Value::Int(1 << 40).cast(&SqlType::Integer).is_err());
        assert!(Value::Text("abcd".into())
            .cast(&SqlType::Text(Some(3)))
            .is_err());
        assert_eq!(
            Value::Text("\\x01ff".into())
                .cast(&SqlType::Bytea)
                .unwrap()
                .to_text(),
            "\\x01ff"
        );
        assert_eq!(
            sql_cmp(&Value::Int(2), &Value::Num(Decimal::parse("2.00").unwrap())).unwrap(),
            Some(Ordering::Equal)
        );
        assert_eq!(sql_cmp(&Value::Null, &Value::Int(1)).unwrap(), None);
    }

    #[test]
    fn arrays_text_form_and_shared_references() {
        let a = Array::parse(r#"{1, NULL ,"3"}"#, ArrElem::BigInt).unwrap();
        assert_eq!(a.to_text(), "{1,NULL,3}");
        let t = Array::parse(r#"{"a b","",null,"NULL",x\,y}"#, ArrElem::Text).unwrap();
        assert_eq!(t.to_text(), r#"{"a b","",NULL,"NULL","x,y"}"#);
        assert!(Array::parse("{1,,2}", ArrElem::BigInt).is_err());
        assert!(Array::parse("{{1}}", ArrElem::BigInt).is_err());
        assert!(Array::parse("1,2", ArrElem::BigInt).is_err());
        // a shared array is copied out, the other reference keeps it; a unique one is moved
        let r = ArrayRef::new(a.clone());
        let shared = r.clone();
        let copy = r.into_array();
        assert_eq!(copy.items.len(), 3);
        assert_eq!(shared.items.len(), 3);
        assert_eq!(shared.into_array().to_text(), a.to_text());
        assert_eq!(
            Value::Array(ArrayRef::new(a))
                .cast(&SqlType::Array(ArrElem::Integer))
                .unwrap()
                .to_text(),
            "{1,NULL,3}"
        );
    }
}
