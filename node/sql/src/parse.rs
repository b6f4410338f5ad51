//! Script and PL/pgSQL parsing on top of `sqlparser`'s PostgreSQL tokenizer.
//!
//! The script is split into statements here; table/index DDL and all SQL
//! statements and expressions are parsed by `sqlparser`; `CREATE FUNCTION`
//! headers and function bodies (the procedural layer) are parsed by this
//! module. Leniencies needed by the whitepaper's Figure 6 (all documented in
//! the crate docs):
//! - `CREATE IF NOT EXISTS name (...)` means `CREATE TABLE IF NOT EXISTS`;
//! - `END IF`, `END LOOP` and `END` of a nested block need no `;`;
//! - the last statement of a script needs no `;`, and `LANGUAGE` is optional
//!   (only `plpgsql` and `sql` are accepted when present);
//! - parameter names may be any word, including keywords such as `to`.

use crate::error::{Pos, Result, SqlError};
use crate::value::SqlType;
use sqlparser::ast::{self, DataType, ExactNumberInfo};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::{Location, Span, Token, TokenWithSpan, Tokenizer};

/// Non-whitespace token with its position.
pub type Tok = TokenWithSpan;

/// Position of a token.
pub fn tok_pos(t: &Tok) -> Pos {
    Pos {
        line: t.span.start.line,
        col: t.span.start.column,
    }
}

/// Position of an sqlparser span.
pub fn span_pos(s: &Span) -> Pos {
    Pos {
        line: s.start.line,
        col: s.start.column,
    }
}

fn perr<T>(pos: Pos, msg: impl Into<String>) -> Result<T> {
    Err(SqlError::Parse {
        pos,
        msg: msg.into(),
    })
}

/// Converts an sqlparser error, pulling the position out of its message.
fn from_parser_error(e: ParserError, fallback: Pos) -> SqlError {
    let msg = match e {
        ParserError::TokenizerError(m) | ParserError::ParserError(m) => m,
        ParserError::RecursionLimitExceeded => "expression nested too deeply".to_string(),
    };
    let pos = find_pos(&msg).unwrap_or(fallback);
    let clean = match msg.find(" at Line: ") {
        Some(i) => msg[..i].to_string(),
        None => msg,
    };
    SqlError::Parse { pos, msg: clean }
}

fn find_pos(msg: &str) -> Option<Pos> {
    let i = msg.find("Line: ")?;
    let rest = &msg[i + 6..];
    let (l, rest) = rest.split_once(", Column: ")?;
    let c: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some(Pos {
        line: l.trim().parse().ok()?,
        col: c.parse().ok()?,
    })
}

/// Tokenizes `src`, dropping whitespace and comments. `origin` shifts positions
/// (for function bodies inside a dollar-quoted string).
pub fn tokenize(src: &str, origin: Option<Location>) -> Result<Vec<Tok>> {
    let dialect = PostgreSqlDialect {};
    let toks = Tokenizer::new(&dialect, src)
        .tokenize_with_location()
        .map_err(|e| SqlError::Parse {
            pos: shift(
                Pos {
                    line: e.location.line,
                    col: e.location.column,
                },
                origin,
            ),
            msg: e.message,
        })?;
    Ok(toks
        .into_iter()
        .filter(|t| !matches!(t.token, Token::Whitespace(_)))
        .map(|mut t| {
            if let Some(o) = origin {
                let s = shift(tok_pos(&t), Some(o));
                let e = shift(
                    Pos {
                        line: t.span.end.line,
                        col: t.span.end.column,
                    },
                    Some(o),
                );
                t.span = Span::new(Location::new(s.line, s.col), Location::new(e.line, e.col));
            }
            t
        })
        .collect())
}

fn shift(p: Pos, origin: Option<Location>) -> Pos {
    match origin {
        None => p,
        Some(o) => {
            if p.line <= 1 {
                Pos {
                    line: o.line,
                    col: o.column + p.col.saturating_sub(1),
                }
            } else {
                Pos {
                    line: o.line + p.line - 1,
                    col: p.col,
                }
            }
        }
    }
}

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(&t.token, Token::Word(w) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(kw))
}

fn word(t: &Tok) -> Option<&str> {
    match &t.token {
        Token::Word(w) => Some(&w.value),
        _ => None,
    }
}

fn eof_tok(last: Option<&Tok>) -> Tok {
    let loc = last.map(|t| t.span.end).unwrap_or(Location::new(0, 0));
    TokenWithSpan::new(Token::EOF, Span::new(loc, loc))
}

fn parser_for(toks: &[Tok]) -> Vec<Tok> {
    let mut v: Vec<Tok> = toks.to_vec();
    v.push(eof_tok(toks.last()));
    v
}

fn check_end(p: &mut Parser, fallback: Pos) -> Result<()> {
    let t = p.peek_token();
    if t.token != Token::EOF {
        return perr(
            if t.span.start.line > 0 {
                tok_pos(&t)
            } else {
                fallback
            },
            format!("unexpected token {}", t.token),
        );
    }
    Ok(())
}

/// Longest single statement or expression accepted (bounds the depth of
/// the syntax tree, and so the stack used to build, check and drop it).
pub const MAX_STATEMENT_TOKENS: usize = 10_000;

fn check_len(toks: &[Tok], fallback: Pos) -> Result<()> {
    if toks.len() > MAX_STATEMENT_TOKENS {
        return perr(
            fallback,
            format!("statement longer than {MAX_STATEMENT_TOKENS} tokens"),
        );
    }
    Ok(())
}

/// Parses tokens as one SQL expression.
pub fn parse_expr_toks(toks: &[Tok], fallback: Pos) -> Result<ast::Expr> {
    if toks.is_empty() {
        return perr(fallback, "expected an expression");
    }
    check_len(toks, fallback)?;
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(parser_for(toks));
    let e = p.parse_expr().map_err(|e| from_parser_error(e, fallback))?;
    check_end(&mut p, fallback)?;
    Ok(e)
}

/// Parses tokens as one SQL statement.
pub fn parse_stmt_toks(toks: &[Tok], fallback: Pos) -> Result<ast::Statement> {
    check_len(toks, fallback)?;
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(parser_for(toks));
    let s = p
        .parse_statement()
        .map_err(|e| from_parser_error(e, fallback))?;
    check_end(&mut p, fallback)?;
    Ok(s)
}

/// Parses a standalone statement (for ad-hoc queries).
pub fn parse_single_statement(sql: &str) -> Result<ast::Statement> {
    let toks = tokenize(sql, None)?;
    let mut toks: &[Tok] = &toks;
    while let Some(t) = toks.last() {
        if t.token == Token::SemiColon {
            toks = &toks[..toks.len() - 1];
        } else {
            break;
        }
    }
    if toks.is_empty() {
        return perr(Pos::default(), "empty statement");
    }
    if toks.iter().any(|t| t.token == Token::SemiColon) {
        return perr(Pos::default(), "only one statement is allowed");
    }
    parse_stmt_toks(toks, tok_pos(&toks[0]))
}

/// Converts a parsed data type.
pub fn convert_type(dt: &DataType, pos: Pos) -> Result<SqlType> {
    let len = |l: &Option<ast::CharacterLength>| -> Option<u32> {
        match l {
            Some(ast::CharacterLength::IntegerLength { length, .. }) => {
                Some(u32::try_from(*length).unwrap_or(u32::MAX))
            }
            _ => None,
        }
    };
    let num = |n: &ExactNumberInfo| -> Result<SqlType> {
        match n {
            ExactNumberInfo::None => Ok(SqlType::Numeric(None)),
            ExactNumberInfo::Precision(p) => mk_num(*p, 0, pos),
            ExactNumberInfo::PrecisionAndScale(p, s) => mk_num(*p, *s, pos),
        }
    };
    Ok(match dt {
        DataType::BigInt(_) | DataType::Int8(_) => SqlType::BigInt,
        DataType::Int(_) | DataType::Integer(_) | DataType::Int4(_) | DataType::SmallInt(_) => {
            SqlType::Integer
        }
        DataType::Numeric(n) | DataType::Decimal(n) => num(n)?,
        DataType::Real | DataType::Float4 => SqlType::Real,
        DataType::DoublePrecision
        | DataType::Float8
        | DataType::Double(ExactNumberInfo::None)
        | DataType::Float(ExactNumberInfo::None) => SqlType::Double,
        DataType::Float(ExactNumberInfo::Precision(p)) => match p {
            1..=24 => SqlType::Real,
            25..=53 => SqlType::Double,
            _ => {
                return Err(SqlError::Resolve {
                    pos,
                    msg: format!("precision for type float must be between 1 and 53 bits, not {p}"),
                })
            }
        },
        DataType::Text | DataType::String(None) => SqlType::Text(None),
        DataType::Varchar(l) | DataType::CharacterVarying(l) => SqlType::Text(len(l)),
        DataType::Boolean | DataType::Bool => SqlType::Boolean,
        DataType::Bytea => SqlType::Bytea,
        DataType::Timestamp(_, _) => SqlType::Timestamp,
        DataType::Array(ast::ArrayElemTypeDef::SquareBracket(inner, _)) => {
            let et = convert_type(inner, pos)?;
            match crate::value::ArrElem::of(et) {
                Some(e) => SqlType::Array(e),
                None => {
                    return Err(SqlError::Resolve {
                        pos,
                        msg: format!(
                            "arrays of {} are not supported (INTEGER[], BIGINT[] and TEXT[] are)",
                            et.pg_name()
                        ),
                    })
                }
            }
        }
        other => {
            return Err(SqlError::Resolve {
                pos,
                msg: format!("unsupported type {other}"),
            })
        }
    })
}

fn mk_num(p: u64, s: i64, pos: Pos) -> Result<SqlType> {
    match (u32::try_from(p), u32::try_from(s)) {
        (Ok(p32), Ok(s32)) if (1..=38).contains(&p32) && s32 <= p32 => {
            Ok(SqlType::Numeric(Some((p32, s32))))
        }
        _ => Err(SqlError::Resolve {
            pos,
            msg: format!("NUMERIC({p},{s}): precision must be 1..38 and scale 0..precision"),
        }),
    }
}

fn parse_type_toks(toks: &[Tok], fallback: Pos) -> Result<SqlType> {
    if toks.is_empty() {
        return perr(fallback, "expected a type");
    }
    if toks.len() == 1 && is_kw(&toks[0], "void") {
        return Ok(SqlType::Void);
    }
    if toks.len() == 1 && is_kw(&toks[0], "record") {
        // record variables get one slot per column from their FOR loop
        return Ok(SqlType::Unknown);
    }
    let dialect = PostgreSqlDialect {};
    let mut p = Parser::new(&dialect).with_tokens_with_locations(parser_for(toks));
    let dt = p
        .parse_data_type()
        .map_err(|e| from_parser_error(e, fallback))?;
    check_end(&mut p, fallback)?;
    convert_type(&dt, tok_pos(&toks[0]))
}

// ---------------------------------------------------------------- script ---

/// One top-level statement of a contract script.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // deploy-time only
pub enum ScriptItem {
    /// A SQL statement parsed by sqlparser (CREATE TABLE/INDEX, INSERT, …).
    Sql(ast::Statement, Pos),
    /// A function definition.
    Function(FuncDef),
}

/// A parsed `CREATE FUNCTION`.
#[derive(Debug, Clone)]
pub struct FuncDef {
    /// Function name (lowercased).
    pub name: String,
    /// `OR REPLACE` given.
    pub or_replace: bool,
    /// Parameters: name, type, position.
    pub params: Vec<(String, SqlType, Pos)>,
    /// Return type.
    pub returns: SqlType,
    /// The `OUT` and `INOUT` parameters, and the columns of `RETURNS TABLE (…)`: their
    /// variables are the result (one: a value; several: a record; with `set`, each RETURN NEXT
    /// row). An `INOUT` parameter is also in `params` (its argument is the variable's initial
    /// value).
    pub outs: Vec<(String, SqlType, Pos)>,
    /// `RETURNS SETOF …` or `RETURNS TABLE (…)`: a set-returning function.
    pub set: bool,
    /// `RETURNS SETOF name` where `name` is no type: the table (lowercased) whose rows the
    /// function returns (resolved against the catalog when the function is compiled).
    pub setof_table: Option<String>,
    /// Body.
    pub body: Block,
    /// Position of `CREATE`.
    pub pos: Pos,
}

/// Splits a script into statements at top-level `;`, with special handling
/// of `CREATE FUNCTION` (whose end is found by its own grammar).
pub fn parse_script(src: &str) -> Result<Vec<ScriptItem>> {
    let toks = tokenize(src, None)?;
    let mut items = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        if toks[i].token == Token::SemiColon {
            i += 1;
            continue;
        }
        let start = tok_pos(&toks[i]);
        if is_kw(&toks[i], "create") {
            let mut j = i + 1;
            let mut or_replace = false;
            if j + 1 < toks.len() && is_kw(&toks[j], "or") && is_kw(&toks[j + 1], "replace") {
                or_replace = true;
                j += 2;
            }
            if j < toks.len() && (is_kw(&toks[j], "function") || is_kw(&toks[j], "procedure")) {
                let (f, next) = parse_function(&toks, j + 1, or_replace, start)?;
                items.push(ScriptItem::Function(f));
                i = next;
                continue;
            }
        }
        // ordinary statement: up to the next top-level ';'
        let mut j = i;
        while j < toks.len() && toks[j].token != Token::SemiColon {
            j += 1;
        }
        let mut stmt: Vec<Tok> = toks[i..j].to_vec();
        // leniency: CREATE IF NOT EXISTS t (...)  ==> CREATE TABLE IF NOT EXISTS
        if stmt.len() > 1 && is_kw(&stmt[0], "create") && is_kw(&stmt[1], "if") {
            let span = stmt[1].span;
            stmt.insert(1, TokenWithSpan::new(Token::make_keyword("TABLE"), span));
        }
        items.push(ScriptItem::Sql(parse_stmt_toks(&stmt, start)?, start));
        i = j + 1;
    }
    Ok(items)
}

/// `TABLE ( name type [, …] )` of `RETURNS TABLE`: the columns (OUT parameters).
fn parse_table_columns(rt: &[Tok], pos: Pos) -> Result<Vec<(String, SqlType, Pos)>> {
    // rt[0] = TABLE, rt[1] = '('
    let mut cols = Vec::new();
    let mut i = 2;
    loop {
        let cpos = rt.get(i).map(tok_pos).unwrap_or(pos);
        let name = match rt.get(i).and_then(word) {
            Some(n) => n.to_ascii_lowercase(),
            None => return perr(cpos, "expected a column name in RETURNS TABLE"),
        };
        i += 1;
        let tstart = i;
        let mut depth = 0i32;
        while let Some(t) = rt.get(i) {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen if depth == 0 => break,
                Token::RParen => depth -= 1,
                Token::Comma if depth == 0 => break,
                _ => {}
            }
            i += 1;
        }
        let ty = parse_type_toks(&rt[tstart..i], cpos)?;
        if cols.iter().any(|(n, _, _)| *n == name) {
            return perr(
                cpos,
                format!("parameter name \"{name}\" used more than once"),
            );
        }
        cols.push((name, ty, cpos));
        match rt.get(i).map(|t| &t.token) {
            Some(Token::Comma) => i += 1,
            Some(Token::RParen) if i + 1 == rt.len() => return Ok(cols),
            _ => {
                return perr(
                    rt.get(i).map(tok_pos).unwrap_or(pos),
                    "expected ',' or ')' in RETURNS TABLE",
                )
            }
        }
    }
}

fn parse_function(
    toks: &[Tok],
    mut i: usize,
    or_replace: bool,
    pos: Pos,
) -> Result<(FuncDef, usize)> {
    let at = |i: usize| -> Pos { toks.get(i).map(tok_pos).unwrap_or(pos) };
    let name = match toks.get(i).and_then(word) {
        Some(n) => n.to_ascii_lowercase(),
        None => return perr(at(i), "expected function name"),
    };
    i += 1;
    if toks.get(i).map(|t| &t.token) != Some(&Token::LParen) {
        return perr(at(i), "expected '(' after function name");
    }
    i += 1;
    let mut params = Vec::new();
    let mut outs: Vec<(String, SqlType, Pos)> = Vec::new();
    if toks.get(i).map(|t| &t.token) == Some(&Token::RParen) {
        i += 1;
    } else {
        loop {
            // OUT name type: the function's result
            let is_out = toks.get(i).is_some_and(|t| is_kw(t, "out"))
                && toks
                    .get(i + 2)
                    .is_some_and(|t| matches!(t.token, Token::Word(_)));
            if is_out {
                i += 1;
            }
            // INOUT name type: a parameter whose variable is also the result
            let is_inout = toks.get(i).is_some_and(|t| is_kw(t, "inout"))
                && toks
                    .get(i + 2)
                    .is_some_and(|t| matches!(t.token, Token::Word(_)));
            if is_inout {
                i += 1;
            }
            // [IN] name type
            if toks.get(i).is_some_and(|t| is_kw(t, "in"))
                && toks
                    .get(i + 2)
                    .is_some_and(|t| matches!(t.token, Token::Word(_)))
            {
                i += 1;
            }
            let ppos = at(i);
            let pname = match toks.get(i).and_then(word) {
                Some(n) => n.to_ascii_lowercase(),
                None => return perr(ppos, "expected parameter name"),
            };
            i += 1;
            let tstart = i;
            let mut depth = 0i32;
            while let Some(t) = toks.get(i) {
                match t.token {
                    Token::LParen => depth += 1,
                    Token::RParen if depth == 0 => break,
                    Token::RParen => depth -= 1,
                    Token::Comma if depth == 0 => break,
                    _ => {}
                }
                i += 1;
            }
            let ty = parse_type_toks(&toks[tstart..i], ppos)?;
            if is_out || is_inout {
                outs.push((pname.clone(), ty, ppos));
                if is_inout {
                    params.push((pname, ty, ppos));
                }
            } else {
                params.push((pname, ty, ppos));
            }
            match toks.get(i).map(|t| &t.token) {
                Some(Token::Comma) => i += 1,
                Some(Token::RParen) => {
                    i += 1;
                    break;
                }
                _ => return perr(at(i), "expected ',' or ')' in parameter list"),
            }
        }
    }
    let mut returns = SqlType::Void;
    let mut returns_given = false;
    let mut returns_record = false;
    let mut set = false;
    let mut table_cols: Option<Vec<(String, SqlType, Pos)>> = None;
    let mut setof_table: Option<String> = None;
    let mut body: Option<(String, Location, usize)> = None;
    let mut language_seen = false;
    while let Some(t) = toks.get(i) {
        if is_kw(t, "returns") {
            let tstart = i + 1;
            let mut j = tstart;
            while j < toks.len() && !is_kw(&toks[j], "as") && !is_kw(&toks[j], "language") {
                j += 1;
            }
            let rt = &toks[tstart..j];
            if rt.first().is_some_and(|t| is_kw(t, "setof")) {
                set = true;
                let rest = &rt[1..];
                if rest.len() == 1 && is_kw(&rest[0], "record") {
                    returns_record = true;
                } else {
                    match (parse_type_toks(rest, at(tstart + 1)), rest) {
                        (Ok(ty), _) => returns = ty,
                        // not a type: a table's name (its rows are the result)
                        (Err(_), [name]) if word(name).is_some() => {
                            setof_table = word(name).map(str::to_ascii_lowercase);
                        }
                        (Err(e), _) => return Err(e),
                    }
                }
            } else if rt.first().is_some_and(|t| is_kw(t, "table"))
                && rt.get(1).is_some_and(|t| t.token == Token::LParen)
            {
                set = true;
                table_cols = Some(parse_table_columns(rt, at(tstart))?);
            } else if rt.len() == 1 && is_kw(&rt[0], "record") {
                returns_record = true;
            } else {
                returns = parse_type_toks(rt, at(tstart))?;
            }
            returns_given = true;
            i = j;
        } else if is_kw(t, "as") {
            match toks.get(i + 1).map(|t| (&t.token, t.span.start)) {
                Some((Token::DollarQuotedString(s), loc)) => {
                    let tag = s.tag.as_ref().map(|t| t.len()).unwrap_or(0) as u64;
                    body = Some((
                        s.value.clone(),
                        Location::new(loc.line, loc.column + tag + 2),
                        i + 1,
                    ));
                }
                Some((Token::SingleQuotedString(s), loc)) => {
                    body = Some((s.clone(), Location::new(loc.line, loc.column + 1), i + 1));
                }
                _ => return perr(at(i + 1), "expected $$ function body $$ after AS"),
            }
            i += 2;
        } else if is_kw(t, "language") {
            match toks.get(i + 1).and_then(word) {
                Some(l) if l.eq_ignore_ascii_case("plpgsql") || l.eq_ignore_ascii_case("sql") => {}
                _ => return perr(at(i + 1), "only LANGUAGE plpgsql is supported"),
            }
            language_seen = true;
            i += 2;
        } else if t.token == Token::SemiColon {
            i += 1;
            break;
        } else if is_kw(t, "immutable") || is_kw(t, "stable") || is_kw(t, "volatile") {
            i += 1;
        } else if body.is_some() {
            // leniency: next statement starts without ';'
            break;
        } else {
            return perr(at(i), format!("unexpected {} in CREATE FUNCTION", t.token));
        }
    }
    let _ = language_seen;
    if let Some(cols) = table_cols {
        if let Some((_, _, ppos)) = outs.first() {
            return perr(
                *ppos,
                "OUT and INOUT arguments aren't allowed in TABLE functions",
            );
        }
        outs = cols;
    } else {
        match outs.as_slice() {
            [] if returns_record && set => {
                return perr(
                    pos,
                    "RETURNS SETOF record needs OUT parameters (AergoSQL has no anonymous \
                     record results)",
                )
            }
            // as before set-returning functions existed: `record` reads as an unknown type
            // (scripts deployed then must load the same way)
            [] if returns_record => returns = SqlType::Unknown,
            [] => {}
            [(_, ty, ppos)] => {
                if returns_record || (returns_given && returns != *ty) {
                    return perr(
                        *ppos,
                        format!("function result type must be {ty} because of OUT parameters"),
                    );
                }
                returns = *ty;
            }
            [(_, _, ppos), ..] => {
                if returns_given && !returns_record {
                    return perr(
                        *ppos,
                        "function result type must be record because of OUT parameters",
                    );
                }
            }
        }
    }
    if set && !outs.is_empty() {
        returns = SqlType::Void;
    }
    if set
        && outs.is_empty()
        && setof_table.is_none()
        && matches!(returns, SqlType::Void | SqlType::Unknown)
    {
        return perr(
            pos,
            format!("SETOF {returns} is not a result type AergoSQL supports"),
        );
    }
    let Some((text, origin, body_idx)) = body else {
        return perr(pos, "function has no AS $$ body $$");
    };
    let btoks = tokenize(&text, Some(origin))?;
    let mut bp = BodyParser {
        toks: &btoks,
        i: 0,
        depth: 0,
        set,
        end_pos: toks
            .get(body_idx)
            .map(|t| Pos {
                line: t.span.end.line,
                col: t.span.end.column,
            })
            .unwrap_or(pos),
    };
    let block = bp.parse_block_top()?;
    Ok((
        FuncDef {
            name,
            or_replace,
            params,
            returns,
            outs,
            set,
            setof_table,
            body: block,
            pos,
        },
        i,
    ))
}

// ------------------------------------------------------------ procedural ---

/// A `DECLARE … BEGIN … END` block.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// Declarations.
    pub decls: Vec<Decl>,
    /// Statements.
    pub stmts: Vec<PStmt>,
    /// `EXCEPTION WHEN cond [OR cond …] THEN stmts …` handlers.
    pub handlers: Vec<Handler>,
}

/// One `WHEN … THEN …` of a block's EXCEPTION section.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Condition names (lowercased), e.g. `division_by_zero`, `others`; `SQLSTATE 'xxxxx'`
    /// is `sqlstate:xxxxx` (the code as written).
    pub conditions: Vec<String>,
    /// Statements.
    pub stmts: Vec<PStmt>,
    /// Position of WHEN.
    pub pos: Pos,
}

/// A variable declaration.
#[derive(Debug, Clone)]
pub struct Decl {
    /// Name (lowercased).
    pub name: String,
    /// Type.
    pub ty: SqlType,
    /// Default value expression.
    pub default: Option<ast::Expr>,
    /// `CONSTANT`.
    pub constant: bool,
    /// Position.
    pub pos: Pos,
}

/// RAISE level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RaiseLevel {
    /// NOTICE/INFO/WARNING/LOG/DEBUG: an event.
    Notice,
    /// EXCEPTION: abort.
    Exception,
}

/// A procedural statement (names not yet resolved).
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // deploy-time only
pub enum PStmt {
    /// `target := expr`.
    Assign {
        /// Variable (lowercased; `rec.field` allowed).
        target: Vec<String>,
        /// Value.
        expr: ast::Expr,
        /// Position.
        pos: Pos,
    },
    /// A SQL statement, with `INTO` targets for SELECT/RETURNING.
    Sql {
        /// The statement.
        stmt: Box<ast::Statement>,
        /// `INTO` variables.
        into: Vec<(String, Pos)>,
        /// `INTO STRICT`.
        strict: bool,
        /// Position.
        pos: Pos,
    },
    /// IF / ELSIF / ELSE.
    If {
        /// Conditions and branches.
        branches: Vec<(ast::Expr, Vec<PStmt>)>,
        /// ELSE branch.
        else_: Vec<PStmt>,
        /// Position.
        pos: Pos,
    },
    /// LOOP, WHILE, FOR.
    Loop {
        /// Label.
        label: Option<String>,
        /// Kind.
        kind: LoopKind,
        /// Body.
        body: Vec<PStmt>,
        /// Position.
        pos: Pos,
    },
    /// EXIT / CONTINUE.
    Exit {
        /// CONTINUE instead of EXIT.
        is_continue: bool,
        /// Label.
        label: Option<String>,
        /// WHEN condition.
        cond: Option<ast::Expr>,
        /// Position.
        pos: Pos,
    },
    /// RETURN.
    Return(Option<ast::Expr>, Pos),
    /// RETURN NEXT \[expr\] (set-returning functions).
    ReturnNext(Option<ast::Expr>, Pos),
    /// RETURN QUERY query (set-returning functions).
    ReturnQuery(Box<ast::Query>, Pos),
    /// RAISE.
    Raise {
        /// Level.
        level: RaiseLevel,
        /// Format with `%` placeholders.
        fmt: String,
        /// Arguments.
        args: Vec<ast::Expr>,
        /// Position.
        pos: Pos,
    },
    /// Nested block.
    Block(Block, Pos),
    /// NULL;
    Null,
}

/// Loop flavours.
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)] // deploy-time only
pub enum LoopKind {
    /// LOOP.
    Plain,
    /// WHILE cond LOOP.
    While(ast::Expr),
    /// FOR v IN \[REVERSE\] lo..hi [BY step] LOOP.
    Range {
        /// Loop variable.
        var: String,
        /// Lower bound (upper when REVERSE).
        lo: ast::Expr,
        /// Upper bound.
        hi: ast::Expr,
        /// Step.
        by: Option<ast::Expr>,
        /// REVERSE.
        reverse: bool,
    },
    /// FOREACH v IN ARRAY expr LOOP.
    ForEach {
        /// Loop variable (declared before).
        var: String,
        /// The array.
        array: ast::Expr,
    },
    /// FOR rec IN SELECT … LOOP.
    Query {
        /// Record variable.
        var: String,
        /// Query.
        query: Box<ast::Query>,
    },
}

struct BodyParser<'a> {
    toks: &'a [Tok],
    i: usize,
    end_pos: Pos,
    depth: u32,
    /// A set-returning function's body: `RETURN NEXT` and `RETURN QUERY` are statements (in
    /// other functions `RETURN next` keeps returning a variable named `next`).
    set: bool,
}

/// Deepest allowed nesting of blocks, IFs and loops in a function body.
pub const MAX_NESTING: u32 = 64;

impl BodyParser<'_> {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.i)
    }
    fn pos(&self) -> Pos {
        self.peek().map(tok_pos).unwrap_or(self.end_pos)
    }
    fn peek_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| is_kw(t, kw))
    }
    fn eat_kw(&mut self, kw: &str) -> bool {
        if self.peek_kw(kw) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_kw(&mut self, kw: &str) -> Result<()> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            let found = self
                .peek()
                .map(|t| t.token.to_string())
                .unwrap_or_else(|| "end of function body".into());
            perr(
                self.pos(),
                format!("expected {}, found {found}", kw.to_uppercase()),
            )
        }
    }
    fn eat_semi(&mut self) -> bool {
        if self.peek().is_some_and(|t| t.token == Token::SemiColon) {
            self.i += 1;
            true
        } else {
            false
        }
    }
    fn expect_semi(&mut self) -> Result<()> {
        if self.eat_semi() {
            Ok(())
        } else {
            perr(self.pos(), "expected ';'")
        }
    }
    fn ident(&mut self) -> Result<(String, Pos)> {
        let pos = self.pos();
        match self.peek().and_then(word) {
            Some(w) => {
                let w = w.to_ascii_lowercase();
                self.i += 1;
                Ok((w, pos))
            }
            None => perr(pos, "expected a name"),
        }
    }

    /// Tokens up to (not including) a top-level stop keyword or `;`.
    /// `CASE … END` and parentheses nest.
    fn until(&mut self, stops: &[&str], stop_semi: bool) -> &[Tok] {
        let start = self.i;
        let mut depth = 0i32;
        let mut case_depth = 0i32;
        while let Some(t) = self.toks.get(self.i) {
            match &t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::SemiColon if stop_semi && depth <= 0 => break,
                _ => {}
            }
            if depth <= 0 {
                if is_kw(t, "case") {
                    case_depth += 1;
                } else if is_kw(t, "end") && case_depth > 0 {
                    case_depth -= 1;
                    self.i += 1;
                    continue;
                } else if case_depth == 0 && stops.iter().any(|s| is_kw(t, s)) {
                    break;
                }
            }
            self.i += 1;
        }
        &self.toks[start..self.i]
    }

    fn expr_until(&mut self, stops: &[&str], stop_semi: bool) -> Result<ast::Expr> {
        let pos = self.pos();
        let toks = self.until(stops, stop_semi);
        parse_expr_toks(toks, pos)
    }

    fn parse_block_top(&mut self) -> Result<Block> {
        let b = self.parse_block()?;
        self.eat_semi();
        if let Some(t) = self.peek() {
            return perr(tok_pos(t), format!("unexpected {} after END", t.token));
        }
        Ok(b)
    }

    /// `[DECLARE decls] BEGIN stmts END`
    fn parse_block(&mut self) -> Result<Block> {
        let mut decls = Vec::new();
        if self.eat_kw("declare") {
            while !self.peek_kw("begin") {
                if self.peek().is_none() {
                    return perr(self.pos(), "expected BEGIN");
                }
                decls.push(self.parse_decl()?);
            }
        }
        self.expect_kw("begin")?;
        let stmts = self.parse_stmts(&["end", "exception"])?;
        let mut handlers = Vec::new();
        if self.eat_kw("exception") {
            loop {
                let pos = self.pos();
                self.expect_kw("when")?;
                let mut conditions = Vec::new();
                loop {
                    let (c, _) = self.ident()?;
                    if c == "sqlstate" {
                        let cpos = self.pos();
                        let code = match self.peek().map(|t| &t.token) {
                            Some(Token::SingleQuotedString(s)) => s.clone(),
                            _ => return perr(cpos, "SQLSTATE needs a five-character code"),
                        };
                        self.i += 1;
                        conditions.push(format!("sqlstate:{code}"));
                    } else {
                        conditions.push(c);
                    }
                    if !self.eat_kw("or") {
                        break;
                    }
                }
                self.expect_kw("then")?;
                let body = self.parse_stmts(&["when", "end"])?;
                handlers.push(Handler {
                    conditions,
                    stmts: body,
                    pos,
                });
                if self.peek_kw("end") {
                    break;
                }
            }
        }
        self.expect_kw("end")?;
        if let Some(Token::Word(_)) = self.peek().map(|t| &t.token) {
            // optional block label after END (`END label;`) unless next is a keyword statement
            if !self.peek_kw("if") && !self.peek_kw("loop") {
                // leave it: the caller decides
            }
        }
        Ok(Block {
            decls,
            stmts,
            handlers,
        })
    }

    fn parse_decl(&mut self) -> Result<Decl> {
        let (name, pos) = self.ident()?;
        let constant = self.eat_kw("constant");
        let tpos = self.pos();
        let tstart = self.i;
        let mut depth = 0;
        while let Some(t) = self.peek() {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                Token::SemiColon | Token::Assignment if depth == 0 => break,
                _ => {}
            }
            if depth == 0 && (is_kw(t, "default") || is_kw(t, "not")) {
                break;
            }
            self.i += 1;
        }
        let ty = parse_type_toks(&self.toks[tstart..self.i], tpos)?;
        if self.eat_kw("not") {
            self.expect_kw("null")?;
        }
        let mut default = None;
        if self
            .peek()
            .is_some_and(|t| matches!(t.token, Token::Assignment | Token::Eq))
            || self.peek_kw("default")
        {
            self.i += 1;
            default = Some(self.expr_until(&[], true)?);
        }
        self.expect_semi()?;
        Ok(Decl {
            name,
            ty,
            default,
            constant,
            pos,
        })
    }

    fn parse_stmts(&mut self, terms: &[&str]) -> Result<Vec<PStmt>> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return perr(
                self.pos(),
                format!("statements nested more than {MAX_NESTING} levels deep"),
            );
        }
        let r = self.parse_stmts_inner(terms);
        self.depth -= 1;
        r
    }

    fn parse_stmts_inner(&mut self, terms: &[&str]) -> Result<Vec<PStmt>> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Ok(out),
                Some(t) if terms.iter().any(|k| is_kw(t, k)) => return Ok(out),
                Some(t) if t.token == Token::SemiColon => {
                    self.i += 1;
                }
                Some(_) => out.push(self.parse_stmt()?),
            }
        }
    }

    fn end_kw(&mut self, kw: &str) -> Result<()> {
        self.expect_kw("end")?;
        self.expect_kw(kw)?;
        Ok(())
    }

    fn parse_stmt(&mut self) -> Result<PStmt> {
        let pos = self.pos();
        // <<label>>
        let mut label = None;
        if self.peek().is_some_and(|t| t.token == Token::ShiftLeft) {
            self.i += 1;
            label = Some(self.ident()?.0);
            if self.peek().is_none_or(|t| t.token != Token::ShiftRight) {
                return perr(self.pos(), "expected '>>' after label");
            }
            self.i += 1;
        }
        let Some(t) = self.peek() else {
            return perr(pos, "unexpected end of function body");
        };
        let kw = word(t).map(|w| w.to_ascii_lowercase()).unwrap_or_default();
        let quoted = matches!(&t.token, Token::Word(w) if w.quote_style.is_some());
        let is_assign =
            matches!(
                self.toks.get(self.i + 1).map(|t| &t.token),
                Some(Token::Assignment) | Some(Token::Period)
            ) || (matches!(self.toks.get(self.i + 1).map(|t| &t.token), Some(Token::Eq))
                && !matches!(kw.as_str(), "return" | "raise"));
        if label.is_some()
            && !matches!(
                kw.as_str(),
                "loop" | "while" | "for" | "foreach" | "declare" | "begin"
            )
        {
            return perr(
                pos,
                "a label must precede LOOP, WHILE, FOR, FOREACH or a block",
            );
        }
        if quoted || is_assign {
            return self.parse_assign(pos);
        }
        match kw.as_str() {
            "if" => {
                self.i += 1;
                let mut branches = Vec::new();
                let cond = self.expr_until(&["then"], false)?;
                self.expect_kw("then")?;
                let body = self.parse_stmts(&["elsif", "elseif", "else", "end"])?;
                branches.push((cond, body));
                let mut else_ = Vec::new();
                loop {
                    if self.eat_kw("elsif") || self.eat_kw("elseif") {
                        let c = self.expr_until(&["then"], false)?;
                        self.expect_kw("then")?;
                        let b = self.parse_stmts(&["elsif", "elseif", "else", "end"])?;
                        branches.push((c, b));
                    } else if self.eat_kw("else") {
                        else_ = self.parse_stmts(&["end"])?;
                    } else {
                        break;
                    }
                }
                self.end_kw("if")?;
                // leniency: ';' after END IF is optional
                self.eat_semi();
                Ok(PStmt::If {
                    branches,
                    else_,
                    pos,
                })
            }
            "loop" => {
                self.i += 1;
                self.finish_loop(label, LoopKind::Plain, pos)
            }
            "while" => {
                self.i += 1;
                let c = self.expr_until(&["loop"], false)?;
                self.expect_kw("loop")?;
                self.finish_loop(label, LoopKind::While(c), pos)
            }
            "for" => {
                self.i += 1;
                let (var, _) = self.ident()?;
                self.expect_kw("in")?;
                if self.peek_kw("select") || self.peek_kw("with") {
                    let qpos = self.pos();
                    let toks = self.until(&["loop"], false).to_vec();
                    let stmt = parse_stmt_toks(&toks, qpos)?;
                    let ast::Statement::Query(q) = stmt else {
                        return perr(qpos, "FOR … IN needs a SELECT");
                    };
                    self.expect_kw("loop")?;
                    return self.finish_loop(label, LoopKind::Query { var, query: q }, pos);
                }
                let reverse = self.eat_kw("reverse");
                let rpos = self.pos();
                let toks = self.until(&["loop", "by"], false).to_vec();
                // split at the `..` (tokenized as periods or inside numbers)
                let text: String = toks.iter().map(|t| format!("{} ", t.token)).collect();
                let compact = text
                    .replace(". .", "..")
                    .replace(" .", ".")
                    .replace(". ", ".");
                let Some((a, b)) = split_range(&compact) else {
                    return perr(rpos, "expected lower..upper in FOR loop");
                };
                let lo = parse_expr_text(&a, rpos)?;
                let hi = parse_expr_text(&b, rpos)?;
                let by = if self.eat_kw("by") {
                    Some(self.expr_until(&["loop"], false)?)
                } else {
                    None
                };
                self.expect_kw("loop")?;
                self.finish_loop(
                    label,
                    LoopKind::Range {
                        var,
                        lo,
                        hi,
                        by,
                        reverse,
                    },
                    pos,
                )
            }
            "exit" | "continue" => {
                self.i += 1;
                let mut lbl = None;
                if let Some(w) = self.peek().and_then(word) {
                    if !w.eq_ignore_ascii_case("when") {
                        lbl = Some(w.to_ascii_lowercase());
                        self.i += 1;
                    }
                }
                let cond = if self.eat_kw("when") {
                    Some(self.expr_until(&[], true)?)
                } else {
                    None
                };
                self.expect_semi()?;
                Ok(PStmt::Exit {
                    is_continue: kw == "continue",
                    label: lbl,
                    cond,
                    pos,
                })
            }
            "return" => {
                self.i += 1;
                // `RETURN QUERY SELECT …` (never a valid expression, so no script that
                // deployed before reads differently now)
                let query_follows = self.toks.get(self.i + 1).is_some_and(|t| {
                    ["select", "with", "execute", "values"]
                        .iter()
                        .any(|k| is_kw(t, k))
                });
                if self.peek_kw("query") && query_follows {
                    if !self.set {
                        return perr(
                            self.pos(),
                            "cannot use RETURN QUERY in a non-SETOF function",
                        );
                    }
                    self.i += 1;
                    let qpos = self.pos();
                    let toks = self.until(&[], true).to_vec();
                    self.expect_semi()?;
                    let stmt = parse_stmt_toks(&toks, qpos)?;
                    let ast::Statement::Query(q) = stmt else {
                        return perr(qpos, "RETURN QUERY needs a SELECT");
                    };
                    return Ok(PStmt::ReturnQuery(q, pos));
                }
                if self.set && self.eat_kw("next") {
                    if self.eat_semi() {
                        return Ok(PStmt::ReturnNext(None, pos));
                    }
                    let e = self.expr_until(&[], true)?;
                    self.expect_semi()?;
                    return Ok(PStmt::ReturnNext(Some(e), pos));
                }
                if self.eat_semi() {
                    return Ok(PStmt::Return(None, pos));
                }
                let e = self.expr_until(&[], true)?;
                self.expect_semi()?;
                Ok(PStmt::Return(Some(e), pos))
            }
            "raise" => {
                self.i += 1;
                let mut level = RaiseLevel::Exception;
                for (k, l) in [
                    ("exception", RaiseLevel::Exception),
                    ("notice", RaiseLevel::Notice),
                    ("info", RaiseLevel::Notice),
                    ("warning", RaiseLevel::Notice),
                    ("log", RaiseLevel::Notice),
                    ("debug", RaiseLevel::Notice),
                ] {
                    if self.eat_kw(k) {
                        level = l;
                        break;
                    }
                }
                let fpos = self.pos();
                let fmt = match self.peek().map(|t| &t.token) {
                    Some(Token::SingleQuotedString(s)) => s.clone(),
                    _ => return perr(fpos, "RAISE needs a format string"),
                };
                self.i += 1;
                let mut args = Vec::new();
                while self.peek().is_some_and(|t| t.token == Token::Comma) {
                    self.i += 1;
                    let apos = self.pos();
                    let toks = self.until(&["using"], true).to_vec();
                    // split on top-level commas (not those of `f(a, b)` or `ARRAY[a, b]`)
                    let mut depth = 0;
                    let mut cut = toks.len();
                    for (k, t) in toks.iter().enumerate() {
                        match t.token {
                            Token::LParen | Token::LBracket => depth += 1,
                            Token::RParen | Token::RBracket => depth -= 1,
                            Token::Comma if depth == 0 => {
                                cut = k;
                                break;
                            }
                            _ => {}
                        }
                    }
                    args.push(parse_expr_toks(&toks[..cut], apos)?);
                    // rewind to the comma so the loop sees it
                    self.i -= toks.len() - cut;
                }
                if self.peek_kw("using") {
                    return perr(self.pos(), "RAISE … USING is not supported");
                }
                self.expect_semi()?;
                let holes = fmt.matches('%').count() - 2 * fmt.matches("%%").count();
                if holes != args.len() {
                    return Err(SqlError::Resolve {
                        pos: fpos,
                        msg: format!(
                            "RAISE format has {holes} placeholders but {} arguments",
                            args.len()
                        ),
                    });
                }
                Ok(PStmt::Raise {
                    level,
                    fmt,
                    args,
                    pos,
                })
            }
            "null" => {
                self.i += 1;
                self.expect_semi()?;
                Ok(PStmt::Null)
            }
            "declare" | "begin" => {
                let b = self.parse_block()?;
                if let Some(l) = &label {
                    if self
                        .peek()
                        .and_then(word)
                        .is_some_and(|w| w.eq_ignore_ascii_case(l))
                    {
                        self.i += 1;
                    }
                }
                self.eat_semi();
                Ok(PStmt::Block(b, pos))
            }
            "perform" => {
                self.i += 1;
                let toks = self.until(&[], true).to_vec();
                self.expect_semi()?;
                let mut v = vec![TokenWithSpan::new(
                    Token::make_keyword("SELECT"),
                    Span::new(
                        Location::new(pos.line, pos.col),
                        Location::new(pos.line, pos.col),
                    ),
                )];
                v.extend(toks);
                let stmt = parse_stmt_toks(&v, pos)?;
                Ok(PStmt::Sql {
                    stmt: Box::new(stmt),
                    into: Vec::new(),
                    strict: false,
                    pos,
                })
            }
            "select" | "insert" | "update" | "delete" | "with" => self.parse_sql(pos),
            "foreach" => {
                self.i += 1;
                let (var, _) = self.ident()?;
                if self.peek_kw("slice") {
                    return perr(
                        self.pos(),
                        "FOREACH … SLICE is not supported (arrays have one dimension)",
                    );
                }
                self.expect_kw("in")?;
                self.expect_kw("array")?;
                let a = self.expr_until(&["loop"], false)?;
                self.expect_kw("loop")?;
                self.finish_loop(label, LoopKind::ForEach { var, array: a }, pos)
            }
            _ => perr(pos, format!("unexpected {} at start of statement", t.token)),
        }
    }

    fn finish_loop(&mut self, label: Option<String>, kind: LoopKind, pos: Pos) -> Result<PStmt> {
        let body = self.parse_stmts(&["end"])?;
        self.end_kw("loop")?;
        if let Some(l) = &label {
            if self
                .peek()
                .and_then(word)
                .is_some_and(|w| w.eq_ignore_ascii_case(l))
            {
                self.i += 1;
            }
        }
        self.eat_semi();
        Ok(PStmt::Loop {
            label,
            kind,
            body,
            pos,
        })
    }

    fn parse_assign(&mut self, pos: Pos) -> Result<PStmt> {
        let mut target = vec![self.ident()?.0];
        while self.peek().is_some_and(|t| t.token == Token::Period) {
            self.i += 1;
            target.push(self.ident()?.0);
        }
        match self.peek().map(|t| &t.token) {
            Some(Token::Assignment) | Some(Token::Eq) => self.i += 1,
            _ => return perr(self.pos(), "expected ':=' in assignment"),
        }
        let expr = self.expr_until(&[], true)?;
        self.expect_semi()?;
        Ok(PStmt::Assign { target, expr, pos })
    }

    fn parse_sql(&mut self, pos: Pos) -> Result<PStmt> {
        let toks = self.until(&[], true).to_vec();
        self.expect_semi()?;
        // find a top-level INTO that is not INSERT INTO
        let is_insert = toks.first().is_some_and(|t| is_kw(t, "insert"));
        let mut depth = 0;
        let mut into_at = None;
        for (k, t) in toks.iter().enumerate() {
            match t.token {
                Token::LParen => depth += 1,
                Token::RParen => depth -= 1,
                _ => {}
            }
            if depth == 0 && is_kw(t, "into") && !(is_insert && k == 1) {
                into_at = Some(k);
                break;
            }
        }
        let mut into = Vec::new();
        let mut strict = false;
        let mut rest = toks.clone();
        if let Some(k) = into_at {
            let mut j = k + 1;
            if toks.get(j).is_some_and(|t| is_kw(t, "strict")) {
                strict = true;
                j += 1;
            }
            loop {
                let Some(t) = toks.get(j) else {
                    return perr(pos, "expected variable after INTO");
                };
                let Some(w) = word(t) else {
                    return perr(tok_pos(t), "expected variable after INTO");
                };
                into.push((w.to_ascii_lowercase(), tok_pos(t)));
                j += 1;
                if toks.get(j).is_some_and(|t| t.token == Token::Comma) {
                    j += 1;
                } else {
                    break;
                }
            }
            rest = toks[..k].to_vec();
            rest.extend_from_slice(&toks[j..]);
        }
        let stmt = parse_stmt_toks(&rest, pos)?;
        Ok(PStmt::Sql {
            stmt: Box::new(stmt),
            into,
            strict,
            pos,
        })
    }
}

fn split_range(s: &str) -> Option<(String, String)> {
    let (a, b) = s.split_once("..")?;
    Some((a.trim().to_string(), b.trim().to_string()))
}

fn parse_expr_text(s: &str, pos: Pos) -> Result<ast::Expr> {
    let toks = tokenize(s, Some(Location::new(pos.line, pos.col)))?;
    parse_expr_toks(&toks, pos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figure6_shape() {
        let src = "CREATE IF NOT EXISTS t (a INT PRIMARY KEY);\nCREATE OR REPLACE FUNCTION\nf (to TEXT, n INT)\nRETURNS text\nAS\n$$\nDECLARE x INT := 1;\nBEGIN\n  IF n > 0 THEN RETURN 'a'; END IF\n  FOR i IN 1..n LOOP x := x + i; END LOOP;\n  RETURN to;\nEND;\n$$";
        let items = parse_script(src).unwrap();
        assert_eq!(items.len(), 2);
        match &items[1] {
            ScriptItem::Function(f) => {
                assert_eq!(f.name, "f");
                assert_eq!(f.params[0].0, "to");
                assert_eq!(f.body.stmts.len(), 3);
                assert_eq!(f.body.decls.len(), 1);
            }
            other => panic!("not a function: {other:?}"),
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let body = "IF true THEN ".repeat(10_000);
        let src = format!("CREATE FUNCTION f() RETURNS INT AS $$ BEGIN {body} RETURN 1; END $$");
        let err = parse_script(&src).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn errors_have_positions() {
        let err = parse_script("CREATE FUNCTION f() RETURNS int AS $$\nBEGIN\n  x := ;\nEND $$")
            .unwrap_err();
        let p = err.pos().unwrap();
        assert_eq!(p.line, 3, "{err}");
        let err = parse_script("SELEC 1").unwrap_err();
        assert_eq!(err.pos().unwrap().line, 1);
    }
}
