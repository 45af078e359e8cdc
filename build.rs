// Migrations are embedded with `sqlx::migrate!`; without this line a new migration file would
// not rebuild the binary and would be silently left out.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
