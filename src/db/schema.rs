// @generated automatically by Diesel CLI.

diesel::table! {
    audit_events (id) {
        id -> Integer,
        at -> Timestamp,
        actor -> Text,
        action -> Text,
        target_kind -> Text,
        target -> Text,
        details -> Text,
        address -> Nullable<Text>,
        prev_hash -> Text,
        hash -> Text,
        app -> Nullable<Text>,
    }
}

diesel::table! {
    audit_head (id) {
        id -> Integer,
        last_id -> Integer,
        hash -> Text,
    }
}

diesel::table! {
    bad_releases (club_id, app, release) {
        club_id -> Integer,
        app -> Text,
        release -> Text,
        marked_at -> Timestamp,
    }
}

diesel::table! {
    club_hosts (club_id, host) {
        club_id -> Integer,
        host -> Text,
    }
}

diesel::table! {
    club_groups (name, club_id) {
        name -> Text,
        club_id -> Integer,
    }
}

diesel::table! {
    clubs (id) {
        id -> Integer,
        slug -> Text,
        name -> Text,
        url -> Nullable<Text>,
        created_at -> Timestamp,
    }
}

diesel::table! {
    flashes (session_id) {
        session_id -> Integer,
        message -> Text,
    }
}

diesel::table! {
    form_tokens (token) {
        token -> Text,
        job_id -> Integer,
        created_at -> Timestamp,
    }
}

diesel::table! {
    job_events (id) {
        id -> Integer,
        job_id -> Integer,
        at -> Timestamp,
        step -> Nullable<Text>,
        kind -> Text,
        message -> Text,
        output -> Nullable<Text>,
        done -> Nullable<Integer>,
        total -> Nullable<Integer>,
        already -> Nullable<Integer>,
    }
}

diesel::table! {
    jobs (id) {
        id -> Integer,
        kind -> Text,
        params -> Text,
        requested_by -> Text,
        status -> Text,
        created_at -> Timestamp,
        started_at -> Nullable<Timestamp>,
        finished_at -> Nullable<Timestamp>,
        worker -> Nullable<Text>,
        outcome -> Nullable<Text>,
        error -> Nullable<Text>,
        app -> Nullable<Text>,
        stop_requested_by -> Nullable<Text>,
    }
}

diesel::table! {
    login_attempts (id) {
        id -> Integer,
        at -> Timestamp,
        account -> Text,
        address -> Text,
        succeeded -> Bool,
    }
}

diesel::table! {
    sessions (id) {
        id -> Integer,
        token_hash -> Text,
        user_id -> Integer,
        csrf_token -> Text,
        created_at -> Timestamp,
        last_seen_at -> Timestamp,
    }
}

diesel::table! {
    switches (id) {
        id -> Integer,
        club_id -> Integer,
        from_release -> Nullable<Text>,
        to_release -> Text,
        commit_id -> Text,
        kind -> Text,
        actor -> Text,
        switched_at -> Timestamp,
        app -> Text,
        job_id -> Nullable<Integer>,
    }
}

diesel::table! {
    webroots (id) {
        id -> Integer,
        club_id -> Integer,
        app -> Text,
        path -> Text,
        current_release -> Nullable<Text>,
        created_at -> Timestamp,
        url -> Nullable<Text>,
        health -> Nullable<Text>,
        health_at -> Nullable<Timestamp>,
        health_note -> Nullable<Text>,
    }
}

diesel::table! {
    users (id) {
        id -> Integer,
        name -> Text,
        password_hash -> Text,
        role -> Text,
        clubs -> Nullable<Text>,
        disabled -> Bool,
        created_at -> Timestamp,
        totp_secret -> Nullable<Text>,
        totp_step -> Nullable<BigInt>,
    }
}

diesel::joinable!(bad_releases -> clubs (club_id));
diesel::joinable!(club_groups -> clubs (club_id));
diesel::joinable!(club_hosts -> clubs (club_id));
diesel::joinable!(flashes -> sessions (session_id));
diesel::joinable!(form_tokens -> jobs (job_id));
diesel::joinable!(job_events -> jobs (job_id));
diesel::joinable!(sessions -> users (user_id));
diesel::joinable!(switches -> clubs (club_id));
diesel::joinable!(webroots -> clubs (club_id));

diesel::allow_tables_to_appear_in_same_query!(
    audit_events,
    audit_head,
    bad_releases,
    club_groups,
    club_hosts,
    clubs,
    flashes,
    form_tokens,
    job_events,
    jobs,
    login_attempts,
    sessions,
    switches,
    users,
    webroots,
);
