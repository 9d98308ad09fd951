//! `sqlx::migrate!` embeds the migration files at compile time; without this, a new
//! migration file alone does not rebuild the crate and the binary silently lacks it.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-changed=migrations/sqlite");
    println!("cargo:rerun-if-changed=migrations/postgres");
}
