//! Database URLs as they may be shown: in log lines, messages and errors a URL appears only
//! through [`redacted`], which keeps everything but the password (of the user part and of a
//! `password=` query parameter), so an operator can still see which server and database are
//! meant.

/// What stands where a password was.
const HIDDEN: &str = "***";

/// `url` with its passwords replaced by `***`: `postgres://app:s3cret@db:5432/audit?sslmode=x`
/// becomes `postgres://app:***@db:5432/audit?sslmode=x`; `password=` and `sslpassword=` query
/// parameters likewise. Anything that is not a URL (a plain path) comes back as it is.
pub fn redacted(url: &str) -> String {
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
    use super::redacted;

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
}
