//! Every function of Flink's "System (Built-in) Functions" page, with how Weir provides it or
//! why it does not yet. `docs/functions.md` is generated from this table
//! (`WEIR_UPDATE_DOCS=1 cargo test -p weir-sql --test functions_doc`).

/// How Weir provides a Flink built-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    /// SQL syntax or an operator, planned by sqlparser and DataFusion with Flink's meaning.
    Syntax,
    /// DataFusion's function of the same name, whose rules are Flink's.
    DataFusion,
    /// Weir's own implementation of Flink's rules (`functions::strings`, `time`, `clock`).
    Weir,
    /// Rewritten onto other functions before planning (`functions::rewrite`).
    Rewrite,
    /// Not supported yet, and why.
    NotYet(&'static str),
}

/// One of Flink's built-ins.
#[derive(Debug, Clone, Copy)]
pub struct Builtin {
    /// Flink's documentation group (comparison, string, temporal, ...).
    pub category: &'static str,
    /// The name a call uses, upper case; operators and syntax by their form.
    pub name: &'static str,
    /// How Weir provides it.
    pub support: Support,
}

const fn f(category: &'static str, name: &'static str, support: Support) -> Builtin {
    Builtin {
        category,
        name,
        support,
    }
}

use Support::{DataFusion as Df, NotYet, Rewrite, Syntax, Weir};

const COLLECTIONS: &str = "collection functions need Weir's ARRAY and MAP values in expressions, which are not planned yet";
const JSON: &str = "the JSON functions are not implemented yet";
const WINDOW: &str =
    "window functions other than ROW_NUMBER (Top-N, deduplication) and aggregates OVER a window are not supported yet";
const BITMAP: &str = "the BITMAP type is not supported yet";
const ZONES: &str =
    "Weir's session time zone is UTC; functions on named time zones are not implemented yet";

/// Flink 2.3's built-ins, in the order of its documentation.
pub const BUILTINS: &[Builtin] = &[
    // Comparison
    f("comparison", "=, <>, <, <=, >, >=", Syntax),
    f("comparison", "IS [NOT] NULL", Syntax),
    f("comparison", "IS [NOT] DISTINCT FROM", Syntax),
    f(
        "comparison",
        "[NOT] BETWEEN [ASYMMETRIC | SYMMETRIC]",
        Syntax,
    ),
    f("comparison", "[NOT] LIKE [ESCAPE]", Syntax),
    f(
        "comparison",
        "[NOT] SIMILAR TO",
        NotYet("SIMILAR TO is not planned by DataFusion's SQL front end for streams yet"),
    ),
    f("comparison", "[NOT] IN (values)", Syntax),
    f(
        "comparison",
        "EXISTS (subquery), IN (subquery)",
        NotYet("subqueries in expressions become joins, which are not supported yet"),
    ),
    // Logical
    f("logical", "AND, OR, NOT", Syntax),
    f("logical", "IS [NOT] TRUE / FALSE / UNKNOWN", Syntax),
    // Arithmetic
    f("arithmetic", "+, -, *, /, %", Syntax),
    f("arithmetic", "MOD", Rewrite),
    f("arithmetic", "POWER", Df),
    f("arithmetic", "ABS", Df),
    f("arithmetic", "SQRT", Df),
    f("arithmetic", "LN", Df),
    f("arithmetic", "LOG10", Df),
    f("arithmetic", "LOG2", Df),
    f("arithmetic", "LOG", Rewrite),
    f("arithmetic", "EXP", Df),
    f("arithmetic", "CEIL", Df),
    f("arithmetic", "CEILING", Rewrite),
    f("arithmetic", "FLOOR", Df),
    f("arithmetic", "SIN", Df),
    f("arithmetic", "SINH", Df),
    f("arithmetic", "COS", Df),
    f("arithmetic", "COSH", Df),
    f("arithmetic", "TAN", Df),
    f("arithmetic", "TANH", Df),
    f("arithmetic", "COT", Df),
    f("arithmetic", "ASIN", Df),
    f("arithmetic", "ACOS", Df),
    f("arithmetic", "ATAN", Df),
    f("arithmetic", "ATAN2", Df),
    f("arithmetic", "DEGREES", Df),
    f("arithmetic", "RADIANS", Df),
    f("arithmetic", "SIGN", Rewrite),
    f("arithmetic", "ROUND", Df),
    f("arithmetic", "PI", Df),
    f("arithmetic", "E", Rewrite),
    f("arithmetic", "RAND", NotYet("RAND is not implemented yet")),
    f(
        "arithmetic",
        "RAND_INTEGER",
        NotYet("RAND_INTEGER is not implemented yet"),
    ),
    f("arithmetic", "UUID", Df),
    f("arithmetic", "BIN", NotYet("BIN is not implemented yet")),
    f("arithmetic", "HEX", NotYet("HEX is not implemented yet")),
    f(
        "arithmetic",
        "UNHEX",
        NotYet("UNHEX is not implemented yet"),
    ),
    f("arithmetic", "TRUNCATE", Rewrite),
    f(
        "arithmetic",
        "PERCENTILE",
        NotYet("PERCENTILE is not implemented yet"),
    ),
    f(
        "arithmetic",
        "INET_ATON",
        NotYet("INET_ATON is not implemented yet"),
    ),
    f(
        "arithmetic",
        "INET_NTOA",
        NotYet("INET_NTOA is not implemented yet"),
    ),
    // String
    f("string", "||", Syntax),
    f("string", "CHAR_LENGTH", Df),
    f("string", "CHARACTER_LENGTH", Df),
    f("string", "UPPER", Df),
    f("string", "LOWER", Df),
    f("string", "POSITION(s1 IN s2)", Syntax),
    f(
        "string",
        "TRIM([BOTH | LEADING | TRAILING] s1 FROM s2)",
        Syntax,
    ),
    f("string", "LTRIM", Df),
    f("string", "RTRIM", Df),
    f("string", "BTRIM", Df),
    f("string", "REPEAT", Df),
    f("string", "REGEXP_REPLACE", Rewrite),
    f("string", "OVERLAY(s1 PLACING s2 FROM i [FOR l])", Syntax),
    f("string", "SUBSTRING(s FROM i [FOR l])", Syntax),
    f("string", "SUBSTRING", Weir),
    f("string", "SUBSTR", Weir),
    f("string", "REPLACE", Df),
    f("string", "REGEXP_EXTRACT", Weir),
    f(
        "string",
        "REGEXP_EXTRACT_ALL",
        NotYet("REGEXP_EXTRACT_ALL is not implemented yet"),
    ),
    f("string", "REGEXP_COUNT", Df),
    f("string", "REGEXP_INSTR", Df),
    f(
        "string",
        "REGEXP_SUBSTR",
        NotYet("REGEXP_SUBSTR is not implemented yet"),
    ),
    f("string", "REGEXP", NotYet("REGEXP is not implemented yet")),
    f("string", "INITCAP", Df),
    f("string", "CONCAT", Weir),
    f("string", "CONCAT_WS", Df),
    f("string", "LPAD", Df),
    f("string", "RPAD", Df),
    f(
        "string",
        "FROM_BASE64",
        NotYet("FROM_BASE64 is not implemented yet"),
    ),
    f(
        "string",
        "TO_BASE64",
        NotYet("TO_BASE64 is not implemented yet"),
    ),
    f("string", "ASCII", Df),
    f("string", "CHR", Df),
    f(
        "string",
        "DECODE",
        NotYet("DECODE(binary, charset) is not implemented yet"),
    ),
    f(
        "string",
        "ENCODE",
        NotYet("ENCODE(string, charset) is not implemented yet"),
    ),
    f("string", "INSTR", Rewrite),
    f("string", "LEFT", Rewrite),
    f("string", "RIGHT", Rewrite),
    f("string", "LOCATE", NotYet("LOCATE is not implemented yet")),
    f(
        "string",
        "PARSE_URL",
        NotYet("PARSE_URL is not implemented yet"),
    ),
    f("string", "PRINTF", NotYet("PRINTF is not implemented yet")),
    f("string", "REVERSE", Df),
    f("string", "SPLIT_INDEX", Weir),
    f("string", "SPLIT", NotYet(COLLECTIONS)),
    f("string", "STR_TO_MAP", NotYet(COLLECTIONS)),
    f("string", "ELT", NotYet("ELT is not implemented yet")),
    f("string", "STARTSWITH", Rewrite),
    f("string", "ENDSWITH", Rewrite),
    f("string", "TRANSLATE", Df),
    f(
        "string",
        "URL_DECODE",
        NotYet("URL_DECODE is not implemented yet"),
    ),
    f(
        "string",
        "URL_ENCODE",
        NotYet("URL_ENCODE is not implemented yet"),
    ),
    f("string", "JSON_QUOTE", NotYet(JSON)),
    f("string", "JSON_UNQUOTE", NotYet(JSON)),
    // Temporal
    f(
        "temporal",
        "DATE 'yyyy-MM-dd', TIME '...', TIMESTAMP '...'",
        Syntax,
    ),
    f("temporal", "INTERVAL '...' unit", Syntax),
    f("temporal", "CURRENT_TIMESTAMP", Weir),
    f("temporal", "NOW", Weir),
    f("temporal", "CURRENT_ROW_TIMESTAMP", Weir),
    f("temporal", "LOCALTIMESTAMP", Weir),
    f("temporal", "CURRENT_DATE", Weir),
    f("temporal", "CURRENT_TIME", Weir),
    f("temporal", "LOCALTIME", Weir),
    f("temporal", "EXTRACT(unit FROM t)", Syntax),
    f("temporal", "YEAR", Rewrite),
    f("temporal", "QUARTER", Rewrite),
    f("temporal", "MONTH", Rewrite),
    f("temporal", "WEEK", Rewrite),
    f("temporal", "DAYOFYEAR", Rewrite),
    f("temporal", "DAYOFMONTH", Rewrite),
    f("temporal", "DAYOFWEEK", Rewrite),
    f("temporal", "HOUR", Rewrite),
    f("temporal", "MINUTE", Rewrite),
    f("temporal", "SECOND", Rewrite),
    f("temporal", "FLOOR(t TO unit), CEIL(t TO unit)", Rewrite),
    f(
        "temporal",
        "(t1, t2) OVERLAPS (t3, t4)",
        NotYet("OVERLAPS is not implemented yet"),
    ),
    f("temporal", "DATE_FORMAT", Weir),
    f(
        "temporal",
        "TIMESTAMPADD",
        NotYet("TIMESTAMPADD is not implemented yet"),
    ),
    f(
        "temporal",
        "TIMESTAMPDIFF",
        NotYet("TIMESTAMPDIFF is not implemented yet"),
    ),
    f("temporal", "CONVERT_TZ", NotYet(ZONES)),
    f("temporal", "FROM_UNIXTIME", Weir),
    f("temporal", "UNIX_TIMESTAMP", Weir),
    f("temporal", "TO_DATE", Weir),
    f("temporal", "TO_TIMESTAMP_LTZ", Weir),
    f("temporal", "TO_TIMESTAMP", Weir),
    f(
        "temporal",
        "CURRENT_WATERMARK",
        NotYet("CURRENT_WATERMARK is not implemented yet"),
    ),
    // Conditional
    f(
        "conditional",
        "CASE ... WHEN ... THEN ... ELSE ... END",
        Syntax,
    ),
    f("conditional", "NULLIF", Df),
    f("conditional", "COALESCE", Df),
    f("conditional", "IF", Rewrite),
    f("conditional", "IFNULL", Df),
    f("conditional", "IS_ALPHA", Rewrite),
    f(
        "conditional",
        "IS_DECIMAL",
        NotYet("IS_DECIMAL is not implemented yet"),
    ),
    f("conditional", "IS_DIGIT", Rewrite),
    f("conditional", "GREATEST", Rewrite),
    f("conditional", "LEAST", Rewrite),
    // Type conversion
    f("type conversion", "CAST(v AS type)", Syntax),
    f("type conversion", "TRY_CAST(v AS type)", Syntax),
    f(
        "type conversion",
        "TYPEOF",
        NotYet("TYPEOF is not implemented yet"),
    ),
    // Collection
    f("collection", "CARDINALITY", NotYet(COLLECTIONS)),
    f("collection", "array[i], map[key]", NotYet(COLLECTIONS)),
    f("collection", "ELEMENT", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_APPEND", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_CONTAINS", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_DISTINCT", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_POSITION", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_PREPEND", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_REMOVE", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_REVERSE", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_SLICE", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_SORT", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_UNION", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_CONCAT", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_EXCEPT", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_INTERSECT", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_MAX", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_MIN", NotYet(COLLECTIONS)),
    f("collection", "ARRAY_JOIN", NotYet(COLLECTIONS)),
    f("collection", "MAP_KEYS", NotYet(COLLECTIONS)),
    f("collection", "MAP_UNION", NotYet(COLLECTIONS)),
    f("collection", "MAP_VALUES", NotYet(COLLECTIONS)),
    f("collection", "MAP_ENTRIES", NotYet(COLLECTIONS)),
    f("collection", "MAP_FROM_ARRAYS", NotYet(COLLECTIONS)),
    // JSON
    f("json", "IS JSON", NotYet(JSON)),
    f("json", "JSON_EXISTS", NotYet(JSON)),
    f("json", "JSON_STRING", NotYet(JSON)),
    f("json", "JSON_VALUE", NotYet(JSON)),
    f("json", "JSON_QUERY", NotYet(JSON)),
    f("json", "JSON_OBJECT", NotYet(JSON)),
    f("json", "JSON_ARRAY", NotYet(JSON)),
    f("json", "JSON_OBJECTAGG", NotYet(JSON)),
    f("json", "JSON_ARRAYAGG", NotYet(JSON)),
    f("json", "JSON", NotYet(JSON)),
    // Variant
    f(
        "variant",
        "PARSE_JSON",
        NotYet("the VARIANT type is not supported yet"),
    ),
    f(
        "variant",
        "TRY_PARSE_JSON",
        NotYet("the VARIANT type is not supported yet"),
    ),
    // Value construction and access
    f(
        "value construction",
        "ROW(v1, v2, ...), (v1, v2, ...)",
        NotYet("ROW values in expressions are not planned yet"),
    ),
    f(
        "value construction",
        "ARRAY[v1, v2, ...]",
        NotYet(COLLECTIONS),
    ),
    f(
        "value construction",
        "MAP[k1, v1, ...]",
        NotYet(COLLECTIONS),
    ),
    f(
        "value construction",
        "ROW",
        NotYet("ROW values in expressions are not planned yet"),
    ),
    f(
        "value construction",
        "OBJECT_OF",
        NotYet("structured types are not supported yet"),
    ),
    f(
        "value construction",
        "OBJECT_UPDATE",
        NotYet("structured types are not supported yet"),
    ),
    f("value access", "row.field", Syntax),
    f(
        "value access",
        "row.*",
        NotYet("expanding a ROW with .* is not supported yet"),
    ),
    // Grouping
    f(
        "grouping",
        "GROUP_ID",
        NotYet("GROUPING SETS are not supported yet"),
    ),
    f(
        "grouping",
        "GROUPING",
        NotYet("GROUPING SETS are not supported yet"),
    ),
    f(
        "grouping",
        "GROUPING_ID",
        NotYet("GROUPING SETS are not supported yet"),
    ),
    // Hash
    f("hash", "MD5", Df),
    f("hash", "SHA1", NotYet("SHA1 is not implemented yet")),
    f("hash", "SHA224", Rewrite),
    f("hash", "SHA256", Rewrite),
    f("hash", "SHA384", Rewrite),
    f("hash", "SHA512", Rewrite),
    f("hash", "SHA2", Rewrite),
    // Aggregate
    f("aggregate", "COUNT", Df),
    f("aggregate", "AVG", Df),
    f("aggregate", "SUM", Df),
    f("aggregate", "MAX", Df),
    f("aggregate", "MIN", Df),
    f("aggregate", "STDDEV_POP", Df),
    f("aggregate", "STDDEV_SAMP", Df),
    f("aggregate", "VAR_POP", Df),
    f("aggregate", "VAR_SAMP", Df),
    f("aggregate", "VARIANCE", Df),
    f(
        "aggregate",
        "COLLECT",
        NotYet("COLLECT (a MULTISET) is not implemented yet"),
    ),
    f(
        "aggregate",
        "LISTAGG",
        NotYet("LISTAGG is not implemented yet"),
    ),
    f(
        "aggregate",
        "FIRST_VALUE",
        NotYet("FIRST_VALUE is not implemented with Flink's semantics yet"),
    ),
    f(
        "aggregate",
        "LAST_VALUE",
        NotYet("LAST_VALUE is not implemented with Flink's semantics yet"),
    ),
    f("aggregate", "ARRAY_AGG", NotYet(COLLECTIONS)),
    f("aggregate", "APPROX_COUNT_DISTINCT", Df),
    f("aggregate", "RANK", NotYet(WINDOW)),
    f("aggregate", "DENSE_RANK", NotYet(WINDOW)),
    f("aggregate", "ROW_NUMBER", Df),
    f("aggregate", "LEAD", NotYet(WINDOW)),
    f("aggregate", "LAG", NotYet(WINDOW)),
    f("aggregate", "CUME_DIST", NotYet(WINDOW)),
    f("aggregate", "PERCENT_RANK", NotYet(WINDOW)),
    f("aggregate", "NTILE", NotYet(WINDOW)),
    // Bitmap
    f("bitmap", "BITMAP_BUILD", NotYet(BITMAP)),
    f("bitmap", "BITMAP_CARDINALITY", NotYet(BITMAP)),
    f("bitmap", "BITMAP_TO_STRING", NotYet(BITMAP)),
    f("bitmap", "BITMAP_TO_ARRAY", NotYet(BITMAP)),
    f("bitmap", "BITMAP_TO_BYTES", NotYet(BITMAP)),
    f("bitmap", "BITMAP_FROM_BYTES", NotYet(BITMAP)),
    f("bitmap", "BITMAP_AND", NotYet(BITMAP)),
    f("bitmap", "BITMAP_ANDNOT", NotYet(BITMAP)),
    f("bitmap", "BITMAP_OR", NotYet(BITMAP)),
    f("bitmap", "BITMAP_XOR", NotYet(BITMAP)),
    f("bitmap", "BITMAP_BUILD_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_BUILD_CARDINALITY_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_AND_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_AND_CARDINALITY_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_OR_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_OR_CARDINALITY_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_XOR_AGG", NotYet(BITMAP)),
    f("bitmap", "BITMAP_XOR_CARDINALITY_AGG", NotYet(BITMAP)),
    // Catalog
    f(
        "catalog",
        "CURRENT_DATABASE",
        NotYet("Weir has no catalogs or databases yet"),
    ),
    // Table-valued functions
    f("table-valued", "TUMBLE, HOP, CUMULATE, SESSION", Syntax),
    f("table-valued", "PROCTIME", Weir),
    f(
        "table-valued",
        "SOURCE_WATERMARK",
        NotYet("SOURCE_WATERMARK() is not supported yet"),
    ),
    f(
        "table-valued",
        "TO_CHANGELOG",
        NotYet("the changelog table functions are not supported yet"),
    ),
    f(
        "table-valued",
        "FROM_CHANGELOG",
        NotYet("the changelog table functions are not supported yet"),
    ),
    f(
        "table-valued",
        "ML_PREDICT",
        NotYet("model inference is not supported"),
    ),
    f(
        "table-valued",
        "ML_EVALUATE",
        NotYet("model inference is not supported"),
    ),
    f(
        "table-valued",
        "VECTOR_SEARCH",
        NotYet("vector search is not supported"),
    ),
];

/// The built-in called `name` (upper case), if Flink has one.
pub fn find(name: &str) -> Option<&'static Builtin> {
    BUILTINS.iter().find(|b| b.name == name)
}
