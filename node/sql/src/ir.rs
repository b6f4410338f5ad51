//! The typed plan: catalog (tables, indexes, functions), expression IR,
//! query/DML plans and procedural statements. Produced by `compile`, run by
//! `exec`/`interp` and (for supported functions) compiled by the JIT.

use crate::error::Pos;
use crate::value::{ArrElem, SqlType, Value};

/// A table column.
#[derive(Debug, Clone)]
pub struct Column {
    /// Name (lowercased).
    pub name: String,
    /// Declared type.
    pub ty: SqlType,
    /// NOT NULL (implied by PRIMARY KEY).
    pub not_null: bool,
    /// DEFAULT expression (constant-folded at deploy when possible).
    pub default: Option<Expr>,
    /// Value of this column in rows stored before it was added by
    /// `ALTER TABLE … ADD COLUMN` (its constant default, or NULL).
    pub fill: Value,
}

/// A secondary index (UNIQUE constraints are unique indexes).
#[derive(Debug, Clone)]
pub struct Index {
    /// Index id within the table.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Indexed columns.
    pub cols: Vec<usize>,
    /// Unique.
    pub unique: bool,
}

/// A table.
#[derive(Debug, Clone)]
pub struct Table {
    /// Stable id used in storage keys.
    pub id: u32,
    /// Name (lowercased).
    pub name: String,
    /// Columns in order.
    pub columns: Vec<Column>,
    /// Primary key columns (empty: hidden row id).
    pub pk: Vec<usize>,
    /// CHECK constraints over the row.
    pub checks: Vec<(Expr, String)>,
    /// Indexes.
    pub indexes: Vec<Index>,
}

/// Arithmetic operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArithOp {
    /// `+`
    Add,
    /// `-`
    Sub,
    /// `*`
    Mul,
    /// `/`
    Div,
    /// `%`
    Mod,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`
    Eq,
    /// `<>`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// Built-in scalar functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Builtin {
    /// length(text)
    Length,
    /// lower(text)
    Lower,
    /// upper(text)
    Upper,
    /// substr(text, from \[, len\])
    Substr,
    /// abs(x)
    Abs,
    /// round(x \[, n\])
    Round,
    /// trim(text)
    Trim,
    /// greatest(x, …): NULLs ignored
    Greatest,
    /// least(x, …): NULLs ignored
    Least,
    /// A DOUBLE PRECISION function (sqrt, exp, ln, sin, floor, …; `crate::float`).
    Float(crate::float::FloatFn),
}

/// Array functions (evaluated by the runtime, which charges [`crate::gas::ARRAY_ELEM`] per
/// element copied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArrayFn {
    /// array_length(a, dim): NULL for an empty array or a dimension other than 1.
    Length,
    /// cardinality(a)
    Cardinality,
    /// array_append(a, x) and `a || x` (the result's element type: a NULL array is empty)
    Append(ArrElem),
    /// array_prepend(x, a) and `x || a`
    Prepend(ArrElem),
    /// array_cat(a, b) and `a || b`
    Cat(ArrElem),
}

/// Chain-context functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainFn {
    /// sender()
    Sender,
    /// block_height()
    BlockHeight,
    /// block_time()
    BlockTime,
    /// tx_hash()
    TxHash,
    /// contract_address()
    ContractAddress,
    /// balance(addr)
    Balance,
    /// send(to, amount)
    Send,
    /// amount()
    Amount,
}

/// Aggregate functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AggFn {
    /// count(*)
    CountStar,
    /// count(x)
    Count,
    /// sum(x)
    Sum,
    /// min(x)
    Min,
    /// max(x)
    Max,
    /// avg(x)
    Avg,
    /// bool_and(x) / every(x)
    BoolAnd,
    /// bool_or(x)
    BoolOr,
    /// string_agg(x, separator \[ORDER BY …\])
    StringAgg,
}

/// A resolved expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// Literal.
    Const(Value),
    /// Column of the row `depth` query levels out.
    Col {
        /// 0 = current query level.
        depth: u32,
        /// Index into that level's row.
        idx: usize,
    },
    /// Procedural variable slot.
    Var(usize),
    /// Unary minus.
    Neg(Box<Expr>),
    /// NOT.
    Not(Box<Expr>),
    /// Arithmetic.
    Arith(ArithOp, Box<Expr>, Box<Expr>),
    /// Comparison.
    Cmp(CmpOp, Box<Expr>, Box<Expr>),
    /// AND.
    And(Box<Expr>, Box<Expr>),
    /// OR.
    Or(Box<Expr>, Box<Expr>),
    /// `||`.
    Concat(Box<Expr>, Box<Expr>),
    /// IS \[NOT\] NULL.
    IsNull(Box<Expr>, bool),
    /// IS \[NOT\] DISTINCT FROM (negated flag = IS NOT DISTINCT).
    IsDistinct(Box<Expr>, Box<Expr>, bool),
    /// IN (list).
    InList(Box<Expr>, Vec<Expr>, bool),
    /// IN (subquery).
    InSub(Box<Expr>, Box<Select>, bool),
    /// EXISTS.
    Exists(Box<Select>, bool),
    /// `x op ANY (subquery)` (false) / `x op ALL (subquery)` (true).
    Quantified(CmpOp, Box<Expr>, Box<Select>, bool),
    /// Scalar subquery.
    ScalarSub(Box<Select>),
    /// BETWEEN.
    Between(Box<Expr>, Box<Expr>, Box<Expr>, bool),
    /// \[NOT\] LIKE / ILIKE.
    Like(Box<Expr>, Box<Expr>, bool, bool),
    /// CASE.
    Case(Option<Box<Expr>>, Vec<(Expr, Expr)>, Option<Box<Expr>>),
    /// COALESCE.
    Coalesce(Vec<Expr>),
    /// NULLIF.
    NullIf(Box<Expr>, Box<Expr>),
    /// CAST.
    Cast(Box<Expr>, SqlType),
    /// Built-in function.
    Builtin(Builtin, Vec<Expr>),
    /// Chain-context function.
    Chain(ChainFn, Vec<Expr>),
    /// Call of another function of the same contract.
    Call(usize, Vec<Expr>),
    /// `ARRAY[e, …]`: the elements cast to the element type.
    Array(ArrElem, Vec<Expr>),
    /// `a[i]`: NULL when `a` or `i` is NULL or `i` is outside 1..=length.
    Subscript(Box<Expr>, Box<Expr>),
    /// `x op ANY (array)` (false) / `x op ALL (array)` (true).
    QuantArray(CmpOp, Box<Expr>, Box<Expr>, bool),
    /// An array function.
    ArrayFn(ArrayFn, Vec<Expr>),
}

impl Expr {
    /// Number of nodes (static gas of evaluating it once).
    pub fn size(&self) -> u64 {
        let sub = |e: &Expr| e.size();
        1 + match self {
            Expr::Const(_) | Expr::Col { .. } | Expr::Var(_) => 0,
            Expr::Neg(a) | Expr::Not(a) | Expr::IsNull(a, _) | Expr::Cast(a, _) => sub(a),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Concat(a, b)
            | Expr::IsDistinct(a, b, _)
            | Expr::NullIf(a, b)
            | Expr::Like(a, b, _, _) => sub(a) + sub(b),
            Expr::InList(a, l, _) => sub(a) + l.iter().map(sub).sum::<u64>(),
            Expr::InSub(a, _, _) | Expr::Quantified(_, a, _, _) => sub(a) + 10,
            Expr::Exists(_, _) | Expr::ScalarSub(_) => 10,
            Expr::Between(a, b, c, _) => sub(a) + sub(b) + sub(c),
            Expr::Case(o, w, e) => {
                o.as_deref().map(sub).unwrap_or(0)
                    + w.iter().map(|(a, b)| sub(a) + sub(b)).sum::<u64>()
                    + e.as_deref().map(sub).unwrap_or(0)
            }
            Expr::Builtin(Builtin::Float(f), l) => {
                l.iter().map(sub).sum::<u64>()
                    + if f.is_transcendental() {
                        crate::gas::TRANSCENDENTAL
                    } else {
                        0
                    }
            }
            Expr::Coalesce(l)
            | Expr::Builtin(_, l)
            | Expr::Chain(_, l)
            | Expr::Call(_, l)
            | Expr::Array(_, l)
            | Expr::ArrayFn(_, l) => l.iter().map(sub).sum::<u64>(),
            Expr::Subscript(a, b) | Expr::QuantArray(_, a, b, _) => sub(a) + sub(b),
        }
    }

    /// Highest column index referenced at depth 0, if any (used to decide
    /// whether an expression can drive an index lookup).
    pub fn max_local_col(&self) -> Option<usize> {
        let mut m: Option<usize> = None;
        self.walk(
            &mut |e, d| {
                if let Expr::Col { depth, idx } = e {
                    if *depth == d {
                        m = Some(m.map_or(*idx, |x: usize| x.max(*idx)));
                    }
                }
            },
            0,
        );
        m
    }

    /// True if it references no column at depth 0 and no subquery.
    pub fn is_row_independent(&self) -> bool {
        let mut ok = true;
        self.walk(
            &mut |e, d| match e {
                Expr::Col { depth, .. } if *depth == d => ok = false,
                Expr::InSub(..) | Expr::Exists(..) | Expr::ScalarSub(_) | Expr::Quantified(..) => {
                    ok = false
                }
                _ => {}
            },
            0,
        );
        ok
    }

    /// Adds every variable slot the expression reads (subqueries included).
    pub fn collect_vars(&self, out: &mut Vec<usize>) {
        self.walk(
            &mut |e, _| {
                if let Expr::Var(s) = e {
                    out.push(*s);
                }
            },
            0,
        );
    }

    /// Whether the expression reads a column of its own query level's FROM row (also from
    /// inside a subquery of it).
    pub fn reads_own_row(&self) -> bool {
        let mut hit = false;
        self.walk(
            &mut |e, d| {
                if matches!(e, Expr::Col { depth, .. } if *depth == d) {
                    hit = true;
                }
            },
            0,
        );
        hit
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr, u32), d: u32) {
        f(self, d);
        match self {
            Expr::Const(_) | Expr::Col { .. } | Expr::Var(_) => {}
            Expr::Neg(a) | Expr::Not(a) | Expr::IsNull(a, _) | Expr::Cast(a, _) => a.walk(f, d),
            Expr::Arith(_, a, b)
            | Expr::Cmp(_, a, b)
            | Expr::And(a, b)
            | Expr::Or(a, b)
            | Expr::Concat(a, b)
            | Expr::IsDistinct(a, b, _)
            | Expr::NullIf(a, b)
            | Expr::Like(a, b, _, _) => {
                a.walk(f, d);
                b.walk(f, d);
            }
            Expr::InList(a, l, _) => {
                a.walk(f, d);
                l.iter().for_each(|x| x.walk(f, d));
            }
            Expr::InSub(a, s, _) | Expr::Quantified(_, a, s, _) => {
                a.walk(f, d);
                s.walk_exprs(f, d + 1);
            }
            Expr::Exists(s, _) | Expr::ScalarSub(s) => s.walk_exprs(f, d + 1),
            Expr::Between(a, b, c, _) => {
                a.walk(f, d);
                b.walk(f, d);
                c.walk(f, d);
            }
            Expr::Case(o, w, e) => {
                if let Some(o) = o {
                    o.walk(f, d);
                }
                for (a, b) in w {
                    a.walk(f, d);
                    b.walk(f, d);
                }
                if let Some(e) = e {
                    e.walk(f, d);
                }
            }
            Expr::Coalesce(l)
            | Expr::Builtin(_, l)
            | Expr::Chain(_, l)
            | Expr::Call(_, l)
            | Expr::Array(_, l)
            | Expr::ArrayFn(_, l) => l.iter().for_each(|x| x.walk(f, d)),
            Expr::Subscript(a, b) | Expr::QuantArray(_, a, b, _) => {
                a.walk(f, d);
                b.walk(f, d);
            }
        }
    }
}

/// How a base table is read.
#[derive(Debug, Clone)]
pub enum Access {
    /// Full scan in primary-key order.
    Scan,
    /// Point lookup: one expression per primary-key column.
    Pk(Vec<Expr>),
    /// Equality lookup on an index: one expression per index column.
    Index(usize, Vec<Expr>),
}

/// Join kind of a FROM item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// First item / inner / cross join.
    Inner,
    /// LEFT \[OUTER\] JOIN.
    Left,
}

/// One FROM item.
#[derive(Debug, Clone)]
pub struct Source {
    /// What to read.
    pub kind: SourceKind,
    /// Join kind with the items before it.
    pub join: JoinKind,
    /// ON condition over the row so far.
    pub on: Option<Expr>,
    /// Offset of its columns in the joined row.
    pub offset: usize,
    /// Number of columns.
    pub width: usize,
}

/// FROM item kinds.
#[derive(Debug, Clone)]
pub enum SourceKind {
    /// Base table.
    Table {
        /// Table index in the catalog.
        table: usize,
        /// Access path.
        access: Access,
    },
    /// Derived table (subquery in FROM, WITH query or view).
    Sub(Box<Select>),
    /// `WITH RECURSIVE`: the anchor's rows, then the step's rows over the previous
    /// iteration's (the work table `id`) until an iteration adds none; each work row read
    /// costs [`crate::gas::ROW_READ`], so a runaway recursion ends out of gas.
    Recursive {
        /// Work table id.
        id: usize,
        /// UNION ALL (keep duplicates).
        all: bool,
        /// Non-recursive term.
        anchor: Box<Select>,
        /// Recursive term (reads the work table).
        step: Box<Select>,
    },
    /// The rows of the previous iteration of the enclosing `Recursive` source `id`.
    WorkTable(usize),
    /// A contract function in FROM (`SELECT * FROM f(args)`): the rows it returns (RETURN
    /// NEXT / RETURN QUERY of a set-returning function, the OUT parameters of a record
    /// function, or a scalar result as one row). The arguments may read variables, enclosing
    /// queries and the FROM items before this one (implicitly LATERAL, as in PostgreSQL):
    /// without the latter they are evaluated once, with them once per row of those items.
    Function {
        /// Function index in the catalog.
        func: usize,
        /// Arguments.
        args: Vec<Expr>,
        /// Some argument reads an earlier FROM item of this query level.
        lateral: bool,
    },
    /// `unnest(array)` in FROM: one row per element (none for a NULL array); the argument
    /// may read earlier FROM items (then `lateral`: evaluated per row joined so far).
    Unnest {
        /// The array.
        arg: Expr,
        /// The argument reads an earlier FROM item of this query level.
        lateral: bool,
    },
    /// UNION / INTERSECT / EXCEPT of two queries (`all`: keep duplicates).
    SetOp {
        /// Operator.
        op: SetOpKind,
        /// ALL.
        all: bool,
        /// Left query.
        left: Box<Select>,
        /// Right query.
        right: Box<Select>,
    },
}

/// Set operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetOpKind {
    /// UNION
    Union,
    /// INTERSECT
    Intersect,
    /// EXCEPT
    Except,
}

/// A view: its query (SQL text, compiled where it is used, read-only) and column names.
#[derive(Debug, Clone)]
pub struct View {
    /// Name (lowercased).
    pub name: String,
    /// The defining query.
    pub sql: String,
    /// Column names given in `CREATE VIEW v (a, b)` (else the query's).
    pub columns: Vec<String>,
}

/// An aggregate call.
#[derive(Debug, Clone)]
pub struct AggCall {
    /// Function.
    pub func: AggFn,
    /// Argument.
    pub arg: Option<Expr>,
    /// DISTINCT.
    pub distinct: bool,
    /// Second argument (string_agg's separator), over the input row.
    pub arg2: Option<Expr>,
    /// ORDER BY inside the call (string_agg): key, descending, nulls first.
    pub order: Vec<(Expr, bool, bool)>,
}

/// GROUP BY / aggregate plan. The post-aggregation row is
/// `group values ++ aggregate values`.
#[derive(Debug, Clone)]
pub struct AggPlan {
    /// Grouping expressions over the joined row.
    pub groups: Vec<Expr>,
    /// Aggregates over the joined row.
    pub aggs: Vec<AggCall>,
}

/// A SELECT.
#[derive(Debug, Clone)]
pub struct Select {
    /// FROM items (empty: one empty row).
    pub sources: Vec<Source>,
    /// Width of the joined row.
    pub width: usize,
    /// WHERE.
    pub filter: Option<Expr>,
    /// Aggregation.
    pub agg: Option<AggPlan>,
    /// HAVING (over the aggregate row).
    pub having: Option<Expr>,
    /// Output expressions.
    pub proj: Vec<Expr>,
    /// DISTINCT.
    pub distinct: bool,
    /// ORDER BY keys: expression, descending, nulls first.
    pub order: Vec<(Expr, bool, bool)>,
    /// LIMIT.
    pub limit: Option<Expr>,
    /// OFFSET.
    pub offset: Option<Expr>,
    /// Output column names and types.
    pub columns: Vec<(String, SqlType)>,
}

impl Select {
    /// Variable slots the query reads.
    pub fn vars_used(&self) -> Vec<usize> {
        let mut out = Vec::new();
        self.walk_exprs(
            &mut |e, _| {
                if let Expr::Var(s) = e {
                    out.push(*s);
                }
            },
            0,
        );
        out.sort_unstable();
        out.dedup();
        out
    }

    fn walk_exprs(&self, f: &mut dyn FnMut(&Expr, u32), d: u32) {
        for s in &self.sources {
            if let Some(on) = &s.on {
                on.walk(f, d);
            }
            match &s.kind {
                SourceKind::Table { access, .. } => match access {
                    Access::Scan => {}
                    Access::Pk(l) | Access::Index(_, l) => l.iter().for_each(|e| e.walk(f, d)),
                },
                SourceKind::Sub(q) => q.walk_exprs(f, d + 1),
                SourceKind::SetOp { left, right, .. }
                | SourceKind::Recursive {
                    anchor: left,
                    step: right,
                    ..
                } => {
                    left.walk_exprs(f, d + 1);
                    right.walk_exprs(f, d + 1);
                }
                SourceKind::WorkTable(_) => {}
                SourceKind::Function { args, .. } => args.iter().for_each(|e| e.walk(f, d)),
                SourceKind::Unnest { arg, .. } => arg.walk(f, d),
            }
        }
        let all = self
            .filter
            .iter()
            .chain(self.having.iter())
            .chain(self.proj.iter())
            .chain(self.order.iter().map(|o| &o.0))
            .chain(self.limit.iter())
            .chain(self.offset.iter());
        for e in all {
            e.walk(f, d);
        }
        if let Some(a) = &self.agg {
            a.groups.iter().for_each(|e| e.walk(f, d));
            for x in &a.aggs {
                x.arg.iter().chain(x.arg2.iter()).for_each(|e| e.walk(f, d));
                x.order.iter().for_each(|o| o.0.walk(f, d));
            }
        }
    }
}

impl Select {
    /// Whether the query reads a column of an enclosing query (a correlated query).
    pub fn reads_outer_columns(&self) -> bool {
        let mut outer = false;
        self.walk_exprs(
            &mut |e, d| {
                if let Expr::Col { depth, .. } = e {
                    if *depth > d {
                        outer = true;
                    }
                }
            },
            0,
        );
        outer
    }
}

impl SqlPlan {
    /// Variable slots the statement reads.
    pub fn vars_used(&self) -> Vec<usize> {
        let mut out = Vec::new();
        let mut f = |e: &Expr, _d: u32| {
            if let Expr::Var(s) = e {
                out.push(*s);
            }
        };
        let access = |a: &Access, f: &mut dyn FnMut(&Expr, u32)| match a {
            Access::Scan => {}
            Access::Pk(l) | Access::Index(_, l) => l.iter().for_each(|e| e.walk(f, 0)),
        };
        let ret = |r: &Option<Returning>, f: &mut dyn FnMut(&Expr, u32)| {
            if let Some(r) = r {
                r.exprs.iter().for_each(|e| e.walk(f, 0));
            }
        };
        match self {
            SqlPlan::Select(q) => q.walk_exprs(&mut f, 0),
            SqlPlan::Insert {
                source, returning, ..
            } => {
                match source {
                    InsertSource::Values(rows) => {
                        rows.iter().flatten().for_each(|e| e.walk(&mut f, 0))
                    }
                    InsertSource::Query(q) => q.walk_exprs(&mut f, 0),
                }
                ret(returning, &mut f);
            }
            SqlPlan::Update {
                access: a,
                filter,
                sets,
                returning,
                ..
            } => {
                access(a, &mut f);
                filter.iter().for_each(|e| e.walk(&mut f, 0));
                sets.iter().for_each(|(_, e)| e.walk(&mut f, 0));
                ret(returning, &mut f);
            }
            SqlPlan::Delete {
                access: a,
                filter,
                returning,
                ..
            } => {
                access(a, &mut f);
                filter.iter().for_each(|e| e.walk(&mut f, 0));
                ret(returning, &mut f);
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// INSERT source.
#[derive(Debug, Clone)]
pub enum InsertSource {
    /// VALUES rows (each already in target-column order).
    Values(Vec<Vec<Expr>>),
    /// INSERT … SELECT.
    Query(Box<Select>),
}

/// RETURNING clause: expressions over the table row, names and types.
#[derive(Debug, Clone)]
pub struct Returning {
    /// Expressions.
    pub exprs: Vec<Expr>,
    /// Columns.
    pub columns: Vec<(String, SqlType)>,
}

/// A SQL statement plan.
#[derive(Debug, Clone)]
pub enum SqlPlan {
    /// SELECT.
    Select(Box<Select>),
    /// INSERT.
    Insert {
        /// Table.
        table: usize,
        /// Target column of each input value.
        cols: Vec<usize>,
        /// Rows.
        source: InsertSource,
        /// RETURNING.
        returning: Option<Returning>,
    },
    /// UPDATE.
    Update {
        /// Table.
        table: usize,
        /// Access path.
        access: Access,
        /// WHERE.
        filter: Option<Expr>,
        /// SET column = expr (over the old row).
        sets: Vec<(usize, Expr)>,
        /// RETURNING (over the new row).
        returning: Option<Returning>,
    },
    /// DELETE.
    Delete {
        /// Table.
        table: usize,
        /// Access path.
        access: Access,
        /// WHERE.
        filter: Option<Expr>,
        /// RETURNING (over the deleted row).
        returning: Option<Returning>,
    },
}

/// A resolved procedural statement with its static gas cost.
#[derive(Debug, Clone)]
pub struct Stmt {
    /// Gas charged each time the statement starts (each iteration for loops).
    pub cost: u64,
    /// What it does.
    pub kind: StmtKind,
}

/// Procedural statement kinds.
#[derive(Debug, Clone)]
pub enum StmtKind {
    /// Assignment with the target's type coercion.
    Assign(usize, Expr),
    /// SQL statement; INTO targets; STRICT.
    Sql(Box<SqlPlan>, Vec<usize>, bool),
    /// IF chain.
    If(Vec<(Expr, Vec<Stmt>)>, Vec<Stmt>),
    /// Loop with label id.
    Loop(usize, LoopPlan, Vec<Stmt>),
    /// EXIT/CONTINUE (is_continue, target loop label id, WHEN).
    Exit(bool, usize, Option<Expr>),
    /// RETURN.
    Return(Option<Expr>),
    /// RAISE NOTICE (true) / EXCEPTION (false) with format and arguments.
    Raise(bool, String, Vec<Expr>),
    /// `RETURN NEXT`: appends one row to the result of a set-returning function (the OUT
    /// parameters, or the expression), each value cast to its column's type; also the end of
    /// a record function (several OUT parameters), followed by a RETURN.
    ReturnNext(Vec<(Expr, SqlType)>),
    /// `RETURN QUERY`: appends the query's rows to the result, cast to the column types.
    ReturnQuery(Box<Select>, Vec<SqlType>),
    /// Initialise variables (block entry): slot, default.
    Init(Vec<(usize, Option<Expr>)>),
    /// `BEGIN body EXCEPTION WHEN … THEN handler END`: the body runs under a savepoint; an
    /// error it raises rolls its writes back (gas stays spent) and runs the first handler
    /// whose conditions match (`crate::interp::condition_matches`), or propagates.
    Guarded(Vec<Stmt>, Vec<Handler>),
}

/// One `WHEN conditions THEN body` of an exception block.
#[derive(Debug, Clone)]
pub struct Handler {
    /// Condition names, or `sqlstate:XXXXX` (validated when compiled).
    pub conds: Vec<String>,
    /// Slots of the handler's own `SQLSTATE` and `SQLERRM` variables (TEXT), set to the
    /// caught error's code and message before `body` runs.
    pub state: (usize, usize),
    /// The handler's statements.
    pub body: Vec<Stmt>,
}

/// Loop flavours after resolution.
#[derive(Debug, Clone)]
pub enum LoopPlan {
    /// LOOP.
    Plain,
    /// WHILE.
    While(Expr),
    /// FOR var IN lo..hi BY step (REVERSE).
    Range {
        /// Variable slot.
        var: usize,
        /// First value.
        lo: Expr,
        /// Last value.
        hi: Expr,
        /// Step.
        by: Option<Expr>,
        /// REVERSE.
        reverse: bool,
    },
    /// FOREACH var IN ARRAY expr: the elements in order, each assigned to `var` (an
    /// existing variable, cast to its type); a NULL array is an error.
    ForEach {
        /// Variable slot.
        var: usize,
        /// The array.
        array: Expr,
    },
    /// FOR rec IN query: one slot per column.
    Query {
        /// Slots receiving the columns.
        slots: Vec<usize>,
        /// Query.
        query: Box<Select>,
    },
}

/// A compiled function.
#[derive(Debug, Clone)]
pub struct Function {
    /// Name.
    pub name: String,
    /// Parameters (name, type).
    pub params: Vec<(String, SqlType)>,
    /// Return type.
    pub returns: SqlType,
    /// Types of all variable slots (slot 0 is FOUND; params follow).
    pub slots: Vec<SqlType>,
    /// Body.
    pub body: Vec<Stmt>,
    /// Where it was defined.
    pub pos: Pos,
    /// Rows instead of a value (several OUT parameters, SETOF, TABLE).
    pub rows: Option<RowShape>,
}

/// The result of a function that returns rows: a record of several OUT parameters (one
/// row), or a set (`RETURNS SETOF …` / `RETURNS TABLE (…)`: any number of rows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowShape {
    /// Output columns (name, type).
    pub columns: Vec<(String, SqlType)>,
    /// A set (RETURN NEXT / RETURN QUERY) rather than one record.
    pub set: bool,
}

impl RowShape {
    /// The ABI's spelling of the result: `RECORD(a INTEGER, b TEXT)`, `SETOF BIGINT` (one
    /// unnamed column) or `TABLE(a INTEGER, b TEXT)`.
    pub fn describe(&self, scalar_set: bool) -> String {
        let cols = || {
            self.columns
                .iter()
                .map(|(n, t)| format!("{n} {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match (self.set, scalar_set, self.columns.first()) {
            (true, true, Some((_, t))) => format!("SETOF {t}"),
            (true, _, _) => format!("TABLE({})", cols()),
            (false, _, _) => format!("RECORD({})", cols()),
        }
    }
}

/// Slot of the FOUND variable.
pub const FOUND_SLOT: usize = 0;

/// Signature of a contract function.
#[derive(Debug, Clone)]
pub struct FuncSig {
    /// Name.
    pub name: String,
    /// Parameter types.
    pub params: Vec<(String, SqlType)>,
    /// Return type (TEXT for a record function: its value in an expression is the record's
    /// text form; VOID for a set-returning function, which is only allowed in FROM).
    pub returns: SqlType,
    /// Rows instead of a value (several OUT parameters, SETOF, TABLE).
    pub rows: Option<RowShape>,
    /// Column name of a scalar result in FROM (`SELECT * FROM f()`): the OUT parameter's
    /// name, else the function's.
    pub column: String,
    /// A set of one unnamed column (`RETURNS SETOF type` without OUT parameters).
    pub scalar_set: bool,
}

/// Tables and functions of one contract.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Tables in creation order.
    pub tables: Vec<Table>,
    /// Compiled functions (same order as `sigs`).
    pub funcs: Vec<Function>,
    /// Function signatures.
    pub sigs: Vec<FuncSig>,
    /// Next table id.
    pub next_table_id: u32,
    /// Views (`CREATE VIEW`), in creation order.
    pub views: Vec<View>,
    /// The engine version the contract was deployed under: every script of it (deploy,
    /// upgrades, ad-hoc queries) compiles with that version's rules.
    pub version: crate::version::EngineVersion,
}

impl Catalog {
    /// Table index by name.
    pub fn table(&self, name: &str) -> Option<usize> {
        self.tables.iter().position(|t| t.name == name)
    }
    /// View by name.
    pub fn view(&self, name: &str) -> Option<&View> {
        self.views.iter().find(|v| v.name == name)
    }
    /// Function index by name.
    pub fn func(&self, name: &str) -> Option<usize> {
        self.sigs.iter().position(|f| f.name == name)
    }
}
