//! Levels: delivery policies (interval, batch size, expiry) of a tenant.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::schema::{groups, levels};
use super::{Result, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = levels)]
pub struct Level {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub interval_time: i32,
    pub unit: String,
    pub exp_time: i32,
    pub exp_unit: String,
    pub batch_count: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// The fields a caller sets; the rest are Pigeon's.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = levels)]
pub struct LevelFields {
    pub name: String,
    pub interval_time: i32,
    pub unit: String,
    pub exp_time: i32,
    pub exp_unit: String,
    pub batch_count: i32,
}

impl Level {
    pub async fn create(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        f: LevelFields,
    ) -> Result<Level> {
        let now = Utc::now();
        let row = Level {
            id: Uuid::now_v7(),
            tenant_id: tenant,
            name: f.name,
            interval_time: f.interval_time,
            unit: f.unit,
            exp_time: f.exp_time,
            exp_unit: f.exp_unit,
            batch_count: f.batch_count,
            created_at: now,
            updated_at: now,
        };
        Ok(diesel::insert_into(levels::table)
            .values(&row)
            .returning(Level::as_returning())
            .get_result(conn)
            .await?)
    }

    pub async fn list(conn: &mut AsyncPgConnection, tenant: Uuid) -> Result<Vec<Level>> {
        Ok(levels::table
            .filter(levels::tenant_id.eq(tenant))
            .order(levels::created_at)
            .select(Level::as_select())
            .load(conn)
            .await?)
    }

    /// A level of the tenant by id, or by name when `key` is not a UUID.
    pub async fn find(conn: &mut AsyncPgConnection, tenant: Uuid, key: &str) -> Result<Level> {
        let query = levels::table
            .filter(levels::tenant_id.eq(tenant))
            .select(Level::as_select())
            .into_boxed();
        let query = match Uuid::parse_str(key) {
            Ok(id) => query.filter(levels::id.eq(id)),
            Err(_) => query.filter(levels::name.eq(key.to_string())),
        };
        query
            .first(conn)
            .await
            .optional()?
            .ok_or(StoreError::NotFound("level"))
    }

    pub async fn find_by_name(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        name: &str,
    ) -> Result<Option<Level>> {
        Ok(levels::table
            .filter(levels::tenant_id.eq(tenant))
            .filter(levels::name.eq(name))
            .select(Level::as_select())
            .first(conn)
            .await
            .optional()?)
    }

    pub async fn update(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        id: Uuid,
        f: &LevelFields,
    ) -> Result<Level> {
        diesel::update(
            levels::table
                .filter(levels::tenant_id.eq(tenant))
                .filter(levels::id.eq(id)),
        )
        .set(f)
        .returning(Level::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("level"))
    }

    /// Deletes a level no live group uses (one statement, so a group cannot slip in between).
    pub async fn delete(conn: &mut AsyncPgConnection, tenant: Uuid, id: Uuid) -> Result<()> {
        let in_use = groups::table
            .filter(groups::level_id.eq(id))
            .filter(groups::deleted_at.is_null());
        let deleted = diesel::delete(
            levels::table
                .filter(levels::tenant_id.eq(tenant))
                .filter(levels::id.eq(id))
                .filter(diesel::dsl::not(diesel::dsl::exists(in_use))),
        )
        .execute(conn)
        .await?;
        if deleted == 1 {
            return Ok(());
        }
        // Tell "no such level" apart from "still used".
        Level::find(conn, tenant, &id.to_string()).await?;
        Err(StoreError::InUse(
            "level is used by groups; move or delete them first".into(),
        ))
    }
}
