//! Containers as the store records them: each pins its image (see
//! `remove.rs`), and keeps what `ps`, `diff` and `commit` need. Their files
//! (snapshots, upper directories, bundles) live elsewhere; this is only the
//! record.

use rusqlite::{OptionalExtension, TransactionBehavior, params};

use crate::images::parse_digest;
use crate::{Digest, Store, StoreError};

/// One container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerRecord {
    /// 64 hex characters.
    pub id: String,
    pub name: String,
    pub image_id: Digest,
    /// The image as the user named it (`busybox:musl`).
    pub image_name: String,
    /// The command line, as `ps` shows it.
    pub command: String,
    pub running: bool,
    /// Unix seconds.
    pub created: i64,
    pub exit_code: Option<i64>,
    pub finished: Option<i64>,
    /// The container's config JSON (the image's, with the run's changes).
    pub config: Vec<u8>,
}

const COLUMNS: &str =
    "id, name, image_id, image_name, command, running, created, exit_code, finished, config";

fn from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(ContainerRecord, String)> {
    let image: String = r.get(2)?;
    Ok((
        ContainerRecord {
            id: r.get(0)?,
            name: r.get(1)?,
            image_id: Digest::sha256_of(b""), // replaced by the caller
            image_name: r.get(3)?,
            command: r.get(4)?,
            running: r.get(5)?,
            created: r.get(6)?,
            exit_code: r.get(7)?,
            finished: r.get(8)?,
            config: r.get(9)?,
        },
        image,
    ))
}

fn with_image((mut c, image): (ContainerRecord, String)) -> Result<ContainerRecord, StoreError> {
    c.image_id = parse_digest(&image)?;
    Ok(c)
}

impl Store {
    /// Records a new container; its name must be free (docker's conflict
    /// message otherwise) and its image stored.
    pub fn create_container(&self, c: &ContainerRecord) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let holder: Option<String> = tx
            .query_row("SELECT id FROM containers WHERE name = ?1", [&c.name], |r| r.get(0))
            .optional()?;
        if let Some(id) = holder {
            return Err(StoreError::ContainerNameInUse { name: c.name.clone(), id });
        }
        let exists: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM images WHERE id = ?1)",
            [c.image_id.as_str()],
            |r| r.get(0),
        )?;
        if !exists {
            return Err(StoreError::NoSuchImage(c.image_id.to_string()));
        }
        tx.execute(
            &format!("INSERT INTO containers ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
            params![
                c.id,
                c.name,
                c.image_id.as_str(),
                c.image_name,
                c.command,
                c.running,
                c.created,
                c.exit_code,
                c.finished,
                c.config
            ],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// A container by name, full ID or unique ID prefix (docker's lookup).
    pub fn container(&self, name: &str) -> Result<ContainerRecord, StoreError> {
        let conn = self.conn();
        let sql = format!("SELECT {COLUMNS} FROM containers WHERE name = ?1 OR id = ?1");
        let exact = conn.query_row(&sql, [name], from_row).optional()?;
        if let Some(found) = exact {
            return with_image(found);
        }
        let is_hex = !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit());
        if is_hex {
            let sql =
                format!("SELECT {COLUMNS} FROM containers WHERE id >= ?1 AND id < ?2 LIMIT 2");
            let mut stmt = conn.prepare(&sql)?;
            let high = format!("{name}g");
            let found: Vec<_> =
                stmt.query_map(params![name, high], from_row)?.collect::<Result<_, _>>()?;
            if found.len() == 1 {
                return with_image(found.into_iter().next().expect("one"));
            }
        }
        Err(StoreError::NoSuchContainer(name.to_owned()))
    }

    /// Every container, newest first.
    pub fn list_containers(&self) -> Result<Vec<ContainerRecord>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {COLUMNS} FROM containers ORDER BY created DESC, id"))?;
        let rows: Vec<_> = stmt.query_map([], from_row)?.collect::<Result<_, _>>()?;
        rows.into_iter().map(with_image).collect()
    }

    /// Records that a container started (`exit_code: None`) or ended.
    pub fn set_container_state(
        &self,
        id: &str,
        running: bool,
        exit_code: Option<i64>,
        finished: Option<i64>,
    ) -> Result<(), StoreError> {
        let changed = self.conn().execute(
            "UPDATE containers SET running = ?2, exit_code = ?3, finished = ?4 WHERE id = ?1",
            params![id, running, exit_code, finished],
        )?;
        if changed == 0 {
            return Err(StoreError::NoSuchContainer(id.to_owned()));
        }
        Ok(())
    }

    /// Gives a container another name (which must be free).
    pub fn rename_container(&self, id: &str, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let holder: Option<String> = tx
            .query_row("SELECT id FROM containers WHERE name = ?1", [name], |r| r.get(0))
            .optional()?;
        if let Some(other) = holder.filter(|h| h != id) {
            return Err(StoreError::ContainerNameInUse { name: name.to_owned(), id: other });
        }
        if tx.execute("UPDATE containers SET name = ?2 WHERE id = ?1", params![id, name])? == 0 {
            return Err(StoreError::NoSuchContainer(id.to_owned()));
        }
        tx.commit()?;
        Ok(())
    }

    /// Forgets a container (its image is then free to go).
    pub fn delete_container(&self, id: &str) -> Result<bool, StoreError> {
        Ok(self.conn().execute("DELETE FROM containers WHERE id = ?1", [id])? == 1)
    }
}
