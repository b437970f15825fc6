//! The SQL the PostgreSQL sink runs, built once per table from its columns as the server
//! describes them: each batch is one statement over a JSON array of the records
//! (`jsonb_array_elements`), each column read from the field of its name and cast to the
//! column's type by the server.

/// A column of a target table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    /// Its name.
    pub name: String,
    /// Its type as `format_type` writes it (`bigint`, `timestamp with time zone`, …).
    pub sql_type: String,
    /// Whether it has a default (or is an identity column).
    pub has_default: bool,
}

/// The catalog query: the columns of table `$1`, in order.
pub const COLUMNS: &str = "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
     (a.atthasdef OR a.attidentity <> '') \
     FROM pg_attribute a \
     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
     AND a.attgenerated = '' ORDER BY a.attnum";

/// `"name"` (names are checked to be letters, digits and `_`; quoting keeps their case).
fn quoted(name: &str) -> String {
    name.split('.')
        .map(|part| format!("\"{part}\""))
        .collect::<Vec<_>>()
        .join(".")
}

/// The expression reading `column` from the record `doc`: timestamps may be epoch
/// milliseconds (what weir's events carry) or text, and a timestamp without time zone holds
/// the UTC time; JSON columns take the value as it is; every other type is the field's text
/// cast by the server.
fn value_of(column: &Column) -> String {
    let field = column.name.replace('\'', "''");
    let ty = &column.sql_type;
    if ty.starts_with("timestamp") {
        // A time without a zone is the UTC time, whatever the server's time zone.
        let zone = if ty.contains("without") {
            " AT TIME ZONE 'UTC'"
        } else {
            ""
        };
        format!(
            "((CASE jsonb_typeof(doc->'{field}') WHEN 'number' \
             THEN to_timestamp((doc->>'{field}')::float8 / 1000) \
             ELSE (doc->>'{field}')::timestamptz END){zone})::{ty}"
        )
    } else if ty == "jsonb" || ty == "json" {
        format!("(doc->'{field}')::{ty}")
    } else {
        format!("(doc->>'{field}')::{ty}")
    }
}

/// The statement writing a batch to `table`: `$1` is a JSON array of the records. With an
/// `upsert_key`, the last record of each key in the batch updates the row of that key.
pub fn write_statement(table: &str, columns: &[Column], upsert_key: &[String]) -> String {
    let names: Vec<String> = columns.iter().map(|c| quoted(&c.name)).collect();
    let values: Vec<String> = columns.iter().map(value_of).collect();
    let rows = "jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS r(doc, n)";
    let insert = format!("INSERT INTO {} ({})", quoted(table), names.join(", "));
    if upsert_key.is_empty() {
        return format!("{insert} SELECT {} FROM {rows}", values.join(", "));
    }
    let keys: Vec<String> = upsert_key.iter().map(|k| quoted(k)).collect();
    let key_values: Vec<String> = columns
        .iter()
        .filter(|c| upsert_key.contains(&c.name))
        .map(value_of)
        .collect();
    let updates: Vec<String> = names
        .iter()
        .filter(|n| !keys.contains(n))
        .map(|n| format!("{n} = EXCLUDED.{n}"))
        .collect();
    let on_conflict = if updates.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", updates.join(", "))
    };
    format!(
        "{insert} SELECT DISTINCT ON ({}) {} FROM {rows} ORDER BY {}, n DESC ON CONFLICT ({}) {on_conflict}",
        key_values.join(", "),
        values.join(", "),
        key_values.join(", "),
        keys.join(", "),
    )
}

/// Creates the epochs table if missing.
pub fn create_epochs(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (sink text NOT NULL, source text NOT NULL, \
         seq bigint NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(), \
         PRIMARY KEY (sink, source))",
        quoted(table)
    )
}

/// Creates the rejected-rows table if missing.
pub fn create_rejected(table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {} (sink text NOT NULL, source text NOT NULL, \
         seq bigint NOT NULL, target text NOT NULL, reason text NOT NULL, row jsonb NOT NULL, \
         rejected_at timestamptz NOT NULL DEFAULT now())",
        quoted(table)
    )
}

/// Locks this sink and source partition's epoch row (making it first): `$1` sink, `$2`
/// source; returns the last applied sequence number.
pub fn lock_epoch(table: &str) -> [String; 2] {
    let table = quoted(table);
    [
        format!(
            "INSERT INTO {table} (sink, source, seq) VALUES ($1, $2, 0) ON CONFLICT DO NOTHING"
        ),
        format!("SELECT seq FROM {table} WHERE sink = $1 AND source = $2 FOR UPDATE"),
    ]
}

/// Records `$3` as the last applied sequence number of sink `$1` and source `$2`.
pub fn set_epoch(table: &str) -> String {
    format!(
        "UPDATE {} SET seq = $3, applied_at = now() WHERE sink = $1 AND source = $2",
        quoted(table)
    )
}

/// Keeps a row that could not be applied: `$1` sink, `$2` source, `$3` seq, `$4` target
/// table, `$5` reason, `$6` the row's JSON.
pub fn insert_rejected(table: &str) -> String {
    format!(
        "INSERT INTO {} (sink, source, seq, target, reason, row) \
         VALUES ($1, $2, $3, $4, $5, $6::text::jsonb)",
        quoted(table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, sql_type: &str) -> Column {
        Column {
            name: name.into(),
            sql_type: sql_type.into(),
            has_default: false,
        }
    }

    #[test]
    fn inserts_read_each_column_from_its_field() {
        let columns = [
            column("user_id", "text"),
            column("start", "timestamp with time zone"),
        ];
        let sql = write_statement("analytics.sessions", &columns, &[]);
        assert!(sql.starts_with("INSERT INTO \"analytics\".\"sessions\" (\"user_id\", \"start\") SELECT (doc->>'user_id')::text, ((CASE jsonb_typeof(doc->'start')"), "{sql}");
        assert!(
            sql.ends_with(
                "FROM jsonb_array_elements($1::text::jsonb) WITH ORDINALITY AS r(doc, n)"
            ),
            "{sql}"
        );
    }

    #[test]
    fn upserts_keep_the_last_record_of_each_key() {
        let columns = [column("user_id", "text"), column("total", "bigint")];
        let sql = write_statement("features", &columns, &["user_id".into()]);
        assert!(
            sql.contains("SELECT DISTINCT ON ((doc->>'user_id')::text)"),
            "{sql}"
        );
        assert!(
            sql.contains("ORDER BY (doc->>'user_id')::text, n DESC"),
            "{sql}"
        );
        assert!(
            sql.ends_with("ON CONFLICT (\"user_id\") DO UPDATE SET \"total\" = EXCLUDED.\"total\""),
            "{sql}"
        );
    }
}
