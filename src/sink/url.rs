//! Database sink URLs: `postgres://user@host:5432/db?table=alerts&create=true` and
//! `mysql://root@127.0.0.1:3306/test?table=alerts`. motif's own parameters (`table`,
//! `create`, `retries`) are taken out; the rest of the URL goes to the client as it is.

use super::table::{identifier, DbError};

/// A database sink's URL, split into the client's part and motif's parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbUrl {
    /// `postgres` or `mysql`.
    pub scheme: String,
    /// The URL for the client (without motif's parameters).
    pub client: String,
    /// The schema (PostgreSQL) of the table, if the name was qualified.
    pub schema: Option<String>,
    /// The table.
    pub table: String,
    /// Create the table (and the progress table) if they do not exist.
    pub create: bool,
    /// Connection attempts before giving up (`None`: keep trying).
    pub retries: Option<u32>,
    /// The URL without its password, for messages.
    pub shown: String,
}

/// Whether `target` names a database rather than a file.
pub fn is_db_url(target: &str) -> bool {
    ["postgres://", "postgresql://", "mysql://", "mariadb://"]
        .iter()
        .any(|p| target.starts_with(p))
}

/// The URL with any password replaced by `***`.
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// Parses a database sink URL.
pub fn parse(url: &str) -> Result<DbUrl, DbError> {
    let shown = without_password(url);
    let bad = |why: &str| DbError::Url {
        url: shown.clone(),
        why: why.to_string(),
    };
    let (scheme, _) = url.split_once("://").ok_or_else(|| bad("not a URL"))?;
    let scheme = match scheme {
        "postgres" | "postgresql" => "postgres",
        "mysql" | "mariadb" => "mysql",
        _ => return Err(bad("the scheme is not postgres:// or mysql://")),
    };
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut table = None;
    let mut create = false;
    let mut retries = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match k {
            "table" => table = Some(v.to_string()),
            "create" => {
                create = match v {
                    "true" | "1" | "yes" | "" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad("`create` is true or false")),
                }
            }
            "retries" => retries = Some(v.parse().map_err(|_| bad("`retries` is a whole number"))?),
            _ => rest.push(pair),
        }
    }
    let table = table.ok_or_else(|| bad("name the table: add `?table=NAME`"))?;
    let (schema, table) = match table.split_once('.') {
        Some((s, t)) => (Some(identifier(s)?.to_string()), identifier(t)?.to_string()),
        None => (None, identifier(&table)?.to_string()),
    };
    if schema.is_some() && scheme == "mysql" {
        return Err(bad(
            "a MySQL table is named without a schema: the database is the URL's path",
        ));
    }
    let mut client = base.to_string();
    if scheme == "mysql" {
        client = client.replacen("mariadb://", "mysql://", 1);
    }
    if !rest.is_empty() {
        client.push('?');
        client.push_str(&rest.join("&"));
    }
    Ok(DbUrl {
        scheme: scheme.to_string(),
        client,
        schema,
        table,
        create,
        retries,
        shown,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_client_and_motif_parts() {
        let u = parse("postgres://me:secret@127.0.0.1:5432/test?table=s1.alerts&create=true&connect_timeout=5")
            .unwrap();
        assert_eq!(u.scheme, "postgres");
        assert_eq!(
            u.client,
            "postgres://me:secret@127.0.0.1:5432/test?connect_timeout=5"
        );
        assert_eq!(
            (u.schema.as_deref(), u.table.as_str()),
            (Some("s1"), "alerts")
        );
        assert!(u.create);
        assert!(!u.shown.contains("secret"));
        let u = parse("mariadb://root@localhost/test?table=t").unwrap();
        assert_eq!(
            (u.scheme.as_str(), u.client.as_str()),
            ("mysql", "mysql://root@localhost/test")
        );
        assert!(parse("postgres://x/db").is_err());
        assert!(parse("postgres://x/db?table=a;drop").is_err());
        assert!(parse("mysql://x/db?table=a.b").is_err());
        assert!(parse("ftp://x/db?table=a").is_err());
        assert!(is_db_url("mysql://x") && !is_db_url("out.jsonl"));
    }
}
