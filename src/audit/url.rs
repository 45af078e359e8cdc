//! [`DatabaseUrl`]: the audit store's URL, parsed once from the setting into the options of
//! the backend it names. Wherever a URL is shown (log lines, messages, errors, `{:?}`), it
//! appears only through [`redacted`], which keeps everything but the password (of the user part
//! and of a `password=` query parameter), so an operator can still see which server and
//! database are meant.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use sqlx::postgres::PgConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

/// The backend a URL names, with its connection options.
#[derive(Clone)]
pub enum Backend {
    /// `sqlite://PATH` (or a plain path): one file, the embedded default.
    Sqlite(SqliteConnectOptions),
    /// `postgres://…` or `postgresql://…`: a database server shared by many replicas.
    Postgres(PgConnectOptions),
}

/// A database URL as every command takes it: `sqlite://PATH`, `sqlite::memory:`, a plain path
/// (an SQLite file), or `postgres://USER:PASSWORD@HOST:PORT/DATABASE`. Shown (`Display`,
/// `Debug`) without its passwords.
#[derive(Clone)]
pub struct DatabaseUrl {
    /// As given (a plain path with `sqlite://` before it): kept for [`redacted`] only.
    text: String,
    backend: Backend,
}

impl DatabaseUrl {
    /// The SQLite file at `path`.
    pub fn sqlite_file(path: &Path) -> DatabaseUrl {
        DatabaseUrl {
            text: format!("sqlite://{}", path.display()),
            backend: Backend::Sqlite(SqliteConnectOptions::new().filename(path)),
        }
    }

    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// The URL as given, password included: only for handing to another client of the same
    /// database (a child process, `psql`), never for showing.
    pub fn expose_secret(&self) -> &str {
        &self.text
    }
}

impl FromStr for DatabaseUrl {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<DatabaseUrl> {
        let text = if s.starts_with("sqlite:") || s.contains("://") {
            s.to_string()
        } else if s.is_empty() {
            anyhow::bail!("the database URL is empty: use sqlite://PATH or postgres://…");
        } else {
            format!("sqlite://{s}")
        };
        let shown = redacted(&text);
        let backend = if text.starts_with("sqlite:") {
            Backend::Sqlite(
                SqliteConnectOptions::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("bad database URL {shown:?}: {e}"))?,
            )
        } else if text.starts_with("postgres:") || text.starts_with("postgresql:") {
            // sqlx's message names the part that does not parse, never the URL itself.
            Backend::Postgres(PgConnectOptions::from_str(&text).map_err(|e| {
                anyhow::anyhow!(
                    "bad PostgreSQL URL {shown:?} (expected \
                     postgres://user:password@host:port/database): {e}"
                )
            })?)
        } else {
            anyhow::bail!(
                "unsupported database URL {shown:?}: use sqlite://PATH (one file, the default) \
                 or postgres://USER:PASSWORD@HOST:PORT/DATABASE (many replicas)"
            )
        };
        Ok(DatabaseUrl { text, backend })
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redacted(&self.text))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseUrl")
            .field(&redacted(&self.text))
            .finish()
    }
}

/// What stands where a password was.
const HIDDEN: &str = "***";

/// `url` with its passwords replaced by `***`: `postgres://app:s3cret@db:5432/audit?sslmode=x`
/// becomes `postgres://app:***@db:5432/audit?sslmode=x`; `password=` and `sslpassword=` query
/// parameters likewise. Anything that is not a URL (a plain path) comes back as it is.
fn redacted(url: &str) -> String {
    let mut out = String::with_capacity(url.len() + HIDDEN.len());
    // The user part ends at the last `@`: a password may hold `/`, `?` or `@` unencoded, and
    // hiding too much is the safe way to be wrong.
    let rest = match url.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            match rest.rsplit_once('@') {
                Some((userinfo, after)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push(':');
                            out.push_str(HIDDEN);
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    after
                }
                None => rest,
            }
        }
        None => url,
    };
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    out.push_str(before_query);
    if let Some(query) = query {
        out.push('?');
        for (i, pair) in query.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((key, _))
                    if key.eq_ignore_ascii_case("password")
                        || key.eq_ignore_ascii_case("sslpassword") =>
                {
                    out.push_str(key);
                    out.push('=');
                    out.push_str(HIDDEN);
                }
                _ => out.push_str(pair),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{Backend, DatabaseUrl, redacted};

    #[test]
    fn passwords_are_hidden_and_the_rest_kept() {
        let cases = [
            (
                "postgres://inferlog:secret@db.internal:5432/audit",
                "postgres://inferlog:***@db.internal:5432/audit",
            ),
            (
                "postgresql://u:p%40ss:w@h/d?sslmode=require&password=other&application_name=x",
                "postgresql://u:***@h/d?sslmode=require&password=***&application_name=x",
            ),
            (
                "postgres://u@h/d?host=/run/pg&PASSWORD=s&sslpassword=k",
                "postgres://u@h/d?host=/run/pg&PASSWORD=***&sslpassword=***",
            ),
            ("postgres://h", "postgres://h"),
            ("postgres://u:a/b?c@d@h:1/db", "postgres://u:***@h:1/db"),
            ("sqlite://inferlog.db", "sqlite://inferlog.db"),
            ("sqlite::memory:", "sqlite::memory:"),
            ("sqlite://a@b.db?mode=ro", "sqlite://a@b.db?mode=ro"),
        ];
        for (url, want) in cases {
            assert_eq!(redacted(url), want, "{url}");
        }
    }

    #[test]
    fn a_url_names_its_backend_and_never_shows_its_password() {
        let pg: DatabaseUrl = "postgres://app:s3cret@db:5432/audit?password=x"
            .parse()
            .unwrap();
        assert!(matches!(pg.backend(), Backend::Postgres(o) if o.get_database() == Some("audit")));
        for shown in [pg.to_string(), format!("{pg:?}")] {
            assert!(
                !shown.contains("s3cret") && shown.contains("db:5432/audit"),
                "{shown}"
            );
        }
        let plain: DatabaseUrl = "data/audit.db".parse().unwrap();
        assert_eq!(plain.to_string(), "sqlite://data/audit.db");
        assert!(
            matches!(plain.backend(), Backend::Sqlite(o) if o.get_filename().ends_with("data/audit.db"))
        );
        let file = DatabaseUrl::sqlite_file(std::path::Path::new("/srv/a b.db"));
        assert!(
            matches!(file.backend(), Backend::Sqlite(o) if o.get_filename() == std::path::Path::new("/srv/a b.db"))
        );
        for (bad, says) in [
            ("", "empty"),
            (
                "mysql://u:pw@h/d",
                "unsupported database URL \"mysql://u:***@h/d\"",
            ),
            (
                "postgres://u:pw@h:99999999/d",
                "bad PostgreSQL URL \"postgres://u:***@h:99999999/d\"",
            ),
        ] {
            let err = format!("{:#}", bad.parse::<DatabaseUrl>().unwrap_err());
            assert!(err.contains(says) && !err.contains("pw@"), "{bad}: {err}");
        }
    }
}
