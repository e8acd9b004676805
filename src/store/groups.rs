//! Groups: named target lists with a channel type and a level. Deleted softly so their
//! messages keep their history.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use serde_json::Value;
use uuid::Uuid;

use super::levels::Level;
use super::schema::{groups, levels};
use super::{Result, StoreError};

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = groups)]
pub struct Group {
    pub id: Uuid,
    pub tenant_id: Uuid,
    pub name: String,
    pub description: String,
    pub channel: String,
    pub level_id: Option<Uuid>,
    pub config: Value,
    pub send_list: Value,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// The fields a caller sets.
#[derive(Debug, Clone, AsChangeset)]
#[diesel(table_name = groups)]
pub struct GroupFields {
    pub name: String,
    pub description: String,
    pub channel: String,
    pub level_id: Option<Uuid>,
    pub config: Value,
    pub send_list: Value,
}

type WithLevel = (Group, Option<Level>);

impl Group {
    pub async fn create(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        f: GroupFields,
    ) -> Result<Group> {
        let now = Utc::now();
        let row = Group {
            id: Uuid::now_v7(),
            tenant_id: tenant,
            name: f.name,
            description: f.description,
            channel: f.channel,
            level_id: f.level_id,
            config: f.config,
            send_list: f.send_list,
            created_at: now,
            updated_at: now,
            deleted_at: None,
        };
        Ok(diesel::insert_into(groups::table)
            .values(&row)
            .returning(Group::as_returning())
            .get_result(conn)
            .await?)
    }

    pub async fn list(conn: &mut AsyncPgConnection, tenant: Uuid) -> Result<Vec<WithLevel>> {
        Ok(groups::table
            .left_join(levels::table)
            .filter(groups::tenant_id.eq(tenant))
            .filter(groups::deleted_at.is_null())
            .order(groups::created_at)
            .select((Group::as_select(), Option::<Level>::as_select()))
            .load(conn)
            .await?)
    }

    /// A live group of the tenant, with its level.
    pub async fn find(conn: &mut AsyncPgConnection, tenant: Uuid, id: Uuid) -> Result<WithLevel> {
        groups::table
            .left_join(levels::table)
            .filter(groups::tenant_id.eq(tenant))
            .filter(groups::id.eq(id))
            .filter(groups::deleted_at.is_null())
            .select((Group::as_select(), Option::<Level>::as_select()))
            .first(conn)
            .await
            .optional()?
            .ok_or(StoreError::NotFound("group"))
    }

    /// Live groups of the tenant among `ids`, with their levels (one query for a whole send).
    pub async fn find_many(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        ids: &[Uuid],
    ) -> Result<Vec<(Group, Level)>> {
        Ok(groups::table
            .inner_join(levels::table)
            .filter(groups::tenant_id.eq(tenant))
            .filter(groups::id.eq_any(ids))
            .filter(groups::deleted_at.is_null())
            .select((Group::as_select(), Level::as_select()))
            .load(conn)
            .await?)
    }

    /// A live group with its level, whatever the tenant (the pigeon's view).
    pub async fn find_live(
        conn: &mut AsyncPgConnection,
        id: Uuid,
    ) -> Result<Option<(Group, Level)>> {
        Ok(groups::table
            .inner_join(levels::table)
            .filter(groups::id.eq(id))
            .filter(groups::deleted_at.is_null())
            .select((Group::as_select(), Level::as_select()))
            .first(conn)
            .await
            .optional()?)
    }

    /// Every live group of every tenant, with its level: what the breeder must run.
    pub async fn all_live(conn: &mut AsyncPgConnection) -> Result<Vec<(Group, Level)>> {
        Ok(groups::table
            .inner_join(levels::table)
            .filter(groups::deleted_at.is_null())
            .select((Group::as_select(), Level::as_select()))
            .load(conn)
            .await?)
    }

    /// Live groups using a level.
    pub async fn using_level(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        level: Uuid,
    ) -> Result<Vec<Uuid>> {
        Ok(groups::table
            .filter(groups::tenant_id.eq(tenant))
            .filter(groups::level_id.eq(level))
            .filter(groups::deleted_at.is_null())
            .select(groups::id)
            .load(conn)
            .await?)
    }

    pub async fn update(
        conn: &mut AsyncPgConnection,
        tenant: Uuid,
        id: Uuid,
        f: &GroupFields,
    ) -> Result<Group> {
        diesel::update(
            groups::table
                .filter(groups::tenant_id.eq(tenant))
                .filter(groups::id.eq(id))
                .filter(groups::deleted_at.is_null()),
        )
        .set(f)
        .returning(Group::as_returning())
        .get_result(conn)
        .await
        .optional()?
        .ok_or(StoreError::NotFound("group"))
    }

    /// Marks the group deleted. Its unfinished messages are cancelled by the caller in the same
    /// transaction (see `Message::cancel_group`).
    pub async fn soft_delete(conn: &mut AsyncPgConnection, tenant: Uuid, id: Uuid) -> Result<()> {
        let n = diesel::update(
            groups::table
                .filter(groups::tenant_id.eq(tenant))
                .filter(groups::id.eq(id))
                .filter(groups::deleted_at.is_null()),
        )
        .set(groups::deleted_at.eq(Some(Utc::now())))
        .execute(conn)
        .await?;
        if n == 0 {
            return Err(StoreError::NotFound("group"));
        }
        Ok(())
    }
}
