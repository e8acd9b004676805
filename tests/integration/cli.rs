//! The `pigeon` command line: `migrate` prepares a database, `token` mints a usable JWT.

use std::process::Command;

use crate::util::{Scratch, TestApp, SECRET};

#[tokio::test]
async fn migrate_creates_and_migrates_the_database() {
    let scratch = Scratch::new();
    let status = Command::new(env!("CARGO_BIN_EXE_pigeon"))
        .arg("migrate")
        .env("DATABASE_URL", &scratch.db_url)
        .env("PIGEON__LOG__LEVEL", "warn")
        .status()
        .expect("run pigeon migrate");
    assert!(status.success());
    let pool = pigeon::store::pool(&scratch.db_url, 1).unwrap();
    let mut conn = pigeon::store::conn(&pool).await.unwrap();
    let tenants = pigeon::store::tenants::Tenant::list(&mut conn)
        .await
        .unwrap();
    assert!(tenants.is_empty());
}

#[tokio::test]
async fn token_prints_a_jwt_the_service_accepts() {
    let app = TestApp::spawn().await;
    let (tenant, _) = app.tenant("acme").await;
    let mint = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_pigeon"))
            .arg("token")
            .args(args)
            .env("PIGEON__AUTH__JWT_SECRET", SECRET)
            .output()
            .expect("run pigeon token")
    };
    let out = mint(&[
        "--role",
        "admin",
        "--tenant",
        &tenant.to_string(),
        "--sub",
        "ops",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let claims = pigeon::auth::Keys::new(SECRET).verify(&token).unwrap();
    assert_eq!((claims.sub.as_str(), claims.tenant), ("ops", Some(tenant)));
    let (s, _) = app.call("GET", "/api/v1/levels", &token, None).await;
    assert_eq!(s, 200);

    let out = mint(&["--role", "admin"]);
    assert!(!out.status.success(), "a tenant role needs --tenant");
    let out = mint(&["--role", "wizard"]);
    assert!(!out.status.success());
}
