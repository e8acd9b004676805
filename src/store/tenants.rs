//! Tenants: the isolation units every other row belongs to.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::tenants;
use super::Result;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = tenants)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Tenant {
    pub async fn create(conn: &mut AsyncPgConnection, name: &str) -> Result<Tenant> {
        let now = Utc::now();
        let tenant = Tenant {
            id: Uuid::now_v7(),
            name: name.to_string(),
            created_at: now,
            updated_at: now,
        };
        Ok(diesel::insert_into(tenants::table)
            .values(&tenant)
            .returning(Tenant::as_returning())
            .get_result(conn)
            .await?)
    }

    pub async fn list(conn: &mut AsyncPgConnection) -> Result<Vec<Tenant>> {
        Ok(tenants::table
            .order(tenants::created_at)
            .select(Tenant::as_select())
            .load(conn)
            .await?)
    }

    pub async fn exists(conn: &mut AsyncPgConnection, id: Uuid) -> Result<bool> {
        Ok(diesel::select(diesel::dsl::exists(tenants::table.find(id)))
            .get_result(conn)
            .await?)
    }
}
