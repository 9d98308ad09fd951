//! Human-readable output: tables for lists, key/value blocks for objects.

use serde_json::Value;

/// Text of a JSON scalar for a table cell.
pub(crate) fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Prints rows under headers, columns padded to their widest cell.
pub(crate) fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{:<w$}", c, w = widths[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    out.push('\n');
    for row in rows {
        out.push_str(&line(row.clone()));
        out.push('\n');
    }
    out
}

/// The `items` of a list answer as a table of the given fields.
pub(crate) fn items_table(v: &Value, fields: &[(&str, &str)]) -> String {
    let rows: Vec<Vec<String>> = v["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| fields.iter().map(|(_, f)| cell(&item[*f])).collect())
                .collect()
        })
        .unwrap_or_default();
    let headers: Vec<&str> = fields.iter().map(|(h, _)| *h).collect();
    let mut out = table(&headers, &rows);
    if let Some(next) = v["next_cursor"].as_str() {
        out.push_str(&format!("(more: --cursor {next})\n"));
    }
    out
}

/// An object as `key: value` lines (PEM blocks left out unless asked for).
pub(crate) fn object(v: &Value) -> String {
    let mut out = String::new();
    if let Some(map) = v.as_object() {
        let width = map.keys().map(|k| k.len()).max().unwrap_or(0);
        for (k, val) in map {
            if k.ends_with("_pem") && !val.is_null() {
                out.push_str(&format!("{k:<width$}  (PEM; use --json or --pem)\n"));
                continue;
            }
            out.push_str(&format!("{k:<width$}  {}\n", cell(val)));
        }
    } else {
        out.push_str(&cell(v));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let t = table(
            &["ID", "STATUS"],
            &[
                vec!["a".into(), "enabled".into()],
                vec!["long-id".into(), "x".into()],
            ],
        );
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "ID       STATUS");
        assert_eq!(lines[1], "a        enabled");
        assert_eq!(lines[2], "long-id  x");
    }
}
