//! The README's `sqlite3` recipes run as written against a database the service produced:
//! through SQLite here (always), and through the `sqlite3` shell when it is installed (CI
//! installs it and requires it: [`crate::helpers::tool`]).

use std::process::Command;

use crate::helpers::spawn_app;

/// The recipe lines: shell commands starting with `sqlite3` that read `inferlog.db`.
fn recipes() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("sqlite3 ") && l.contains(" inferlog.db "))
        .map(str::to_string)
        .collect()
}

/// The SQL of a recipe line: what stands between its double quotes, as the shell passes it.
fn sql_of(line: &str) -> String {
    let start = line.find('"').unwrap() + 1;
    let end = line.rfind('"').unwrap();
    line[start..end].replace("\\$", "$")
}

#[test]
fn readme_sqlite3_recipes_run_against_a_service_database() {
    let recipes = recipes();
    assert!(
        recipes.len() >= 5,
        "the README lists {} recipes",
        recipes.len()
    );

    let mut app = spawn_app();
    let first = app.post_predict(r#"{"features": [5.8, 2.7, 5.1, 1.9]}"#);
    let truth = serde_json::json!({"request_id": first.json()["request_id"], "label": "virginica"});
    assert_eq!(app.post_json("/feedback", &truth.to_string()).status, 201);
    app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5]]}"#);
    app.post_predict(r#"{"features": [5.8, 2.7]}"#);
    app.post_predict(r#"{"features": [5.8, NaN, 1, 1]}"#);
    app.stop();
    std::os::unix::fs::symlink(&app.db_path, app.dir.path().join("inferlog.db")).unwrap();

    for line in &recipes {
        let sql = sql_of(line);
        let rows = app.db_json(&format!("select json_object('n', count(*)) from ({sql})"));
        let n = rows[0]["n"].as_i64().unwrap();
        assert!(n > 0, "recipe returned no rows: {line}");
    }

    // Without the sqlite3 shell the recipes are checked through SQLite only (above).
    if crate::helpers::tool("sqlite3").is_some() {
        for line in &recipes {
            let out = Command::new("bash")
                .arg("-c")
                .arg(line)
                .current_dir(app.dir.path())
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.is_empty(),
                "{line}: {stderr}"
            );
            let produced = !out.stdout.is_empty()
                || line.contains('>')
                    && app
                        .dir
                        .path()
                        .join("last-hour.csv")
                        .metadata()
                        .unwrap()
                        .len()
                        > 0;
            assert!(produced, "no output from {line}");
        }
    }
}

/// The README's `psql` recipes (those that only read) run against a PostgreSQL store the
/// service wrote, each returning rows.
#[test]
fn readme_psql_recipes_run_against_a_postgres_store() {
    let Some(url) = crate::pg::database() else {
        return;
    };
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let prefix = r#"psql "$DATABASE_URL" -c ""#;
    let recipes: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with(prefix) && !l.contains("\\copy"))
        .collect();
    assert!(
        recipes.len() >= 3,
        "the README lists {} psql recipes",
        recipes.len()
    );
    let app = crate::helpers::spawn_app_with(|s| s.database_url = url.parse().unwrap());
    app.post_predict(r#"{"features": [[5.1, 3.5, 1.4, 0.2], [6.0, 2.9, 4.5, 1.5]]}"#);
    app.wait_for_rows(2);
    let pg = crate::pg::shared().expect("a PostgreSQL server");
    let db = crate::pg::database_name(&app.database_url);
    for line in recipes {
        let sql = &line[prefix.len()..line.len() - 1];
        let n = pg.psql(db, &format!("select count(*) from ({sql}) recipe"));
        assert!(
            n.trim().parse::<i64>().unwrap() > 0,
            "recipe returned no rows: {line}"
        );
    }
}

/// The Prometheus alert rules in the README are valid (`promtool check rules`, where it is
/// installed: see [`crate::helpers::tool`]).
#[test]
fn readme_alert_rules_pass_promtool() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```yaml\ngroups:")
        .expect("an alert rules block")
        + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let rules = &readme[start..end];
    assert!(rules.contains("inferlog_drift_psi") && rules.contains("inferlog_audit_store_failing"));
    // The drift alerts fire where the service says `alert`: a PSI at or above the threshold.
    let alert = inferlog::monitor::drift::DriftRule::default().psi_alert;
    let drift_rules: Vec<&str> = rules
        .lines()
        .filter(|l| l.contains("expr: inferlog_drift_psi"))
        .collect();
    assert_eq!(drift_rules.len(), 2, "{rules}");
    for rule in drift_rules {
        assert!(rule.ends_with(&format!(">= {alert}")), "{rule}");
    }
    let Some(promtool) = crate::helpers::tool("promtool") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.yml");
    std::fs::write(&path, rules).unwrap();
    let out = Command::new(promtool)
        .args(["check", "rules"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every setting the binary reads from the environment is in the README's configuration table
/// and in `.env.example`, so neither falls behind the code.
#[test]
fn every_environment_setting_is_documented() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let cli = std::fs::read_to_string(root.join("src/cli.rs")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let example = std::fs::read_to_string(root.join(".env.example")).unwrap();
    let vars: Vec<&str> = cli
        .split("env = \"")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .collect();
    assert!(vars.len() > 20, "found only {vars:?}");
    for var in vars {
        assert!(
            readme.contains(&format!("`{var}`")),
            "{var} is missing from the README"
        );
        assert!(
            example
                .lines()
                .any(|l| l.trim_start_matches("# ").starts_with(&format!("{var}="))),
            "{var} is missing from .env.example"
        );
    }
}

#[test]
fn readme_training_examples_leave_the_shipped_model_as_it_is() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let commands: Vec<&str> = readme
        .lines()
        .filter(|l| {
            (l.contains("-- train ") || l.contains("inferlog train "))
                && !l.trim_start().starts_with('#')
        })
        .collect();
    assert!(!commands.is_empty());
    // The reproducible one runs the built binary (`cargo run` may rebuild the release binary
    // first).
    for line in commands.iter().filter(|l| l.contains("SOURCE_DATE_EPOCH=")) {
        assert!(
            line.contains("./target/release/inferlog train") && !line.contains("cargo run"),
            "{line}"
        );
    }
    for line in commands {
        // A command that writes models/iris.json must be the one that reproduces it byte for
        // byte (a fixed SOURCE_DATE_EPOCH and the shipped options).
        let writes_iris =
            line.contains("--dataset iris") && !line.contains("--name") && !line.contains("--out");
        assert!(
            !writes_iris || line.contains("SOURCE_DATE_EPOCH="),
            "this README command overwrites the shipped models/iris.json: {line}"
        );
    }
}
