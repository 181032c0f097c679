//! The test PostgreSQL that scripts/test.sh starts is real, reachable on loopback, and its
//! application role is what production needs: no superuser, no BYPASSRLS.

use sqlx::Connection;

#[tokio::test]
async fn app_role_is_unprivileged_and_admin_is_superuser() {
    let pg = tenantry_tests::postgres();
    assert!(
        pg.app_url.contains("@127.0.0.1:"),
        "test server must listen on loopback only"
    );
    let mut app = sqlx::PgConnection::connect(&pg.app_url)
        .await
        .expect("app role connects");
    let (sup, bypass): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut app)
            .await
            .unwrap();
    assert!(
        !sup && !bypass,
        "the app role must not bypass row-level security"
    );
    let mut admin = sqlx::PgConnection::connect(&pg.admin_url)
        .await
        .expect("admin connects");
    let version: i32 = sqlx::query_scalar("SELECT current_setting('server_version_num')::int")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(version >= 150000, "PostgreSQL 15+ expected, got {version}");
}
