// @generated automatically by Diesel CLI.

diesel::table! {
    deliveries (id) {
        id -> Uuid,
        message_id -> Uuid,
        run -> Int4,
        target_index -> Int4,
        target -> Text,
        status -> Text,
        attempts -> Int4,
        response_code -> Nullable<Int4>,
        response -> Nullable<Text>,
        last_error -> Nullable<Text>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        delivered_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    groups (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        description -> Text,
        channel -> Text,
        level_id -> Nullable<Uuid>,
        config -> Jsonb,
        send_list -> Jsonb,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
        deleted_at -> Nullable<Timestamptz>,
    }
}

diesel::table! {
    idempotency_keys (tenant_id, key) {
        tenant_id -> Uuid,
        key -> Text,
        request_hash -> Text,
        response -> Jsonb,
        created_at -> Timestamptz,
    }
}

diesel::table! {
    levels (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        name -> Text,
        interval_time -> Int4,
        unit -> Text,
        exp_time -> Int4,
        exp_unit -> Text,
        batch_count -> Int4,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    messages (id) {
        id -> Uuid,
        tenant_id -> Uuid,
        group_id -> Uuid,
        state -> Text,
        subject -> Text,
        body -> Nullable<Text>,
        use_template -> Bool,
        variables -> Jsonb,
        send_list -> Nullable<Jsonb>,
        data -> Nullable<Jsonb>,
        repeat -> Nullable<Jsonb>,
        run -> Int4,
        attempts -> Int4,
        due_at -> Timestamptz,
        run_at -> Timestamptz,
        finished_at -> Nullable<Timestamptz>,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::table! {
    tenants (id) {
        id -> Uuid,
        name -> Text,
        created_at -> Timestamptz,
        updated_at -> Timestamptz,
    }
}

diesel::joinable!(deliveries -> messages (message_id));
diesel::joinable!(groups -> levels (level_id));
diesel::joinable!(groups -> tenants (tenant_id));
diesel::joinable!(idempotency_keys -> tenants (tenant_id));
diesel::joinable!(levels -> tenants (tenant_id));
diesel::joinable!(messages -> groups (group_id));
diesel::joinable!(messages -> tenants (tenant_id));

diesel::allow_tables_to_appear_in_same_query!(
    deliveries,
    groups,
    idempotency_keys,
    levels,
    messages,
    tenants,
);
