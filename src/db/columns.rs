//! How the domain's enums are stored: each as its one literal (`as_str`) in a TEXT column,
//! read back through its `parse`, so a row holds a `JobStatus`, not a string to compare. A
//! value no version wrote is an error naming it, never a silent default.

use diesel::deserialize::{self, FromSql};
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::Text;
use diesel::sqlite::{Sqlite, SqliteValue};
use diesel::{AsExpression, FromSqlRow};

use crate::domain::{JobKind, JobStatus, Role, SwitchKind};

macro_rules! text_column {
    ($ty:ident, $proxy:ident) => {
        /// Lets diesel derive for the domain type from here (`foreign_derive`).
        #[derive(AsExpression, FromSqlRow)]
        #[diesel(foreign_derive)]
        #[diesel(sql_type = Text)]
        #[allow(dead_code)]
        struct $proxy($ty);

        impl ToSql<Text, Sqlite> for $ty {
            fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
                out.set_value(self.as_str());
                Ok(IsNull::No)
            }
        }

        impl FromSql<Text, Sqlite> for $ty {
            fn from_sql(value: SqliteValue<'_, '_, '_>) -> deserialize::Result<Self> {
                let text = <String as FromSql<Text, Sqlite>>::from_sql(value)?;
                Ok($ty::parse(&text)?)
            }
        }
    };
}

text_column!(JobStatus, JobStatusColumn);
text_column!(JobKind, JobKindColumn);
text_column!(SwitchKind, SwitchKindColumn);
text_column!(Role, RoleColumn);

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel::sql_types::Text;

    use super::*;

    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Text)]
        value: JobStatus,
    }

    #[derive(QueryableByName)]
    struct Literals {
        #[diesel(sql_type = Text)]
        text: String,
    }

    #[test]
    fn each_value_is_stored_as_its_literal_and_a_value_no_version_wrote_is_an_error() {
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        diesel::sql_query("CREATE TABLE t (value TEXT NOT NULL)")
            .execute(&mut conn)
            .unwrap();
        for status in JobStatus::ALL {
            diesel::sql_query("INSERT INTO t VALUES (?)")
                .bind::<Text, _>(status)
                .execute(&mut conn)
                .unwrap();
        }
        let literals = diesel::sql_query("SELECT group_concat(value) AS text FROM t")
            .get_result::<Literals>(&mut conn)
            .unwrap();
        assert_eq!(
            literals.text, "queued,running,succeeded,failed,cancelled,interrupted",
            "stored as the literal each version wrote"
        );
        let read: Vec<JobStatus> = diesel::sql_query("SELECT value FROM t")
            .load::<Stored>(&mut conn)
            .unwrap()
            .into_iter()
            .map(|row| row.value)
            .collect();
        assert_eq!(read, JobStatus::ALL);

        diesel::sql_query("INSERT INTO t VALUES ('paused')")
            .execute(&mut conn)
            .unwrap();
        let refused = diesel::sql_query("SELECT value FROM t")
            .load::<Stored>(&mut conn)
            .err()
            .expect("an unknown status is not read as some status");
        assert!(refused.to_string().contains("\"paused\""), "{refused}");
    }
}
