// @generated automatically by Diesel CLI.

diesel::table! {
    bad_releases (club_id, release) {
        club_id -> Integer,
        release -> Text,
        marked_at -> Timestamp,
    }
}

diesel::table! {
    clubs (id) {
        id -> Integer,
        slug -> Text,
        name -> Text,
        webroot -> Text,
        url -> Nullable<Text>,
        current_release -> Nullable<Text>,
        created_at -> Timestamp,
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
    }
}

diesel::joinable!(bad_releases -> clubs (club_id));
diesel::joinable!(switches -> clubs (club_id));

diesel::allow_tables_to_appear_in_same_query!(bad_releases, clubs, switches,);
