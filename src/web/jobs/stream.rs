//! A job page's live events: server-sent events woken by new job events.

use super::*;

/// One of a session's live streams; dropping it frees the place.
pub(super) struct StreamSlot {
    streams: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<i32, usize>>>,
    session_id: i32,
}

impl StreamSlot {
    /// A place for a stream of `session_id`, unless it has `[web] max_streams_per_session`.
    fn take(state: &AppState, session_id: i32) -> Option<StreamSlot> {
        let mut open = state.streams.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(session_id).or_default();
        if *count >= state.settings.web.max_streams_per_session {
            return None;
        }
        *count += 1;
        Some(StreamSlot {
            streams: state.streams.clone(),
            session_id,
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.session_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.session_id);
            }
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct EventsQuery {
    after: i32,
}

/// How often an idle live job page's stream writes a keep-alive (which is also how a closed
/// page is noticed and its place freed); it reads nothing for it.
pub(super) const STREAM_KEEPALIVE: Duration = Duration::from_millis(250);

/// How often an idle stream reads the database anyway: whether its session still holds.
pub(super) const STREAM_RECHECK: Duration = Duration::from_secs(1);

/// `GET /jobs/{id}/events`: server-sent events, one `log` event per job event after
/// `?after=` (or the `Last-Event-ID` a reconnecting browser sends), then one `end` event when
/// the job has finished. The stream reads the database when a job event was written
/// (whichever process wrote it), not on a timer.
pub async fn events(
    staff: Staff,
    state: web::Data<AppState>,
    id: web::Path<i32>,
    query: web::Query<EventsQuery>,
    request: actix_web::HttpRequest,
) -> Result<HttpResponse, AppError> {
    let id = id.into_inner();
    // A browser that reconnects says the last event it had.
    let resumed = request
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
        .unwrap_or(0);
    let exists = state
        .db(move |_, conn| Ok(jobs::by_id(conn, id)?.is_some()))
        .await?;
    if !exists {
        return Err(AppError::NotFound(format!("There is no job #{id}.")));
    }
    let slot = StreamSlot::take(&state, staff.session_id).ok_or_else(|| {
        AppError::TooManyRequests(
            "Too many live job pages are open in this session; close some and reload.".into(),
        )
    })?;
    struct Cursor {
        state: web::Data<AppState>,
        after: i32,
        done: bool,
        started: Instant,
        first: bool,
        // Held while the stream lives; frees the session's place when it ends.
        slot: StreamSlot,
        events: tokio::sync::watch::Receiver<i32>,
        read_at: Instant,
        role: crate::domain::Role,
    }
    let cursor = Cursor {
        role: staff.role,
        events: state.events.clone(),
        state,
        after: query.after.max(resumed),
        done: false,
        started: Instant::now(),
        first: true,
        slot,
        read_at: Instant::now(),
    };
    // A stream woken by new job events; bounded to an hour (the browser reconnects).
    let stream = futures_util::stream::unfold(cursor, move |mut cursor| async move {
        if cursor.done || cursor.started.elapsed() > Duration::from_secs(3600) {
            return None;
        }
        if !cursor.first {
            match tokio::time::timeout(STREAM_KEEPALIVE, cursor.events.changed()).await {
                // The watch ended: the server is stopping.
                Ok(Err(_)) => return None,
                Ok(Ok(())) => {}
                Err(_) if cursor.read_at.elapsed() < STREAM_RECHECK => {
                    let alive = web::Bytes::from_static(b": waiting\n\n");
                    return Some((Ok::<_, actix_web::Error>(alive), cursor));
                }
                Err(_) => {}
            }
        }
        cursor.first = false;
        cursor.read_at = Instant::now();
        // Seen before reading: an event written while the database is read wakes the next wait.
        cursor.events.borrow_and_update();
        let (after, session_id) = (cursor.after, cursor.slot.session_id);
        let read = cursor
            .state
            .db(move |settings, conn| {
                let live =
                    session::still_live(conn, session_id, db::now(), settings.session_timeouts())?;
                let events = jobs::events_after(conn, id, after)?;
                let job = jobs::by_id(conn, id)?;
                // A finished job's count says where it ended.
                let last = match &job {
                    Some(job) if job.status.is_finished() => jobs::last_count(conn, id)?,
                    _ => None,
                };
                Ok((live, events, job, last))
            })
            .await;
        // The stream ends with its session (sign-out, disabled, new password, timeout).
        let (events, job, last) = match read {
            Ok((true, events, job, last)) => (events, job, last),
            Ok((false, ..)) | Err(_) => return None,
        };
        let count_of = job.as_ref().map(CountOf::job);
        let words = |tally: Option<Tally>, status| Some(count_of.as_ref()?.words(tally?, status));
        let mut chunk = String::new();
        for event in &events {
            let data = serde_json::json!({
                "id": event.id,
                "kind": event.kind,
                "step": event.step,
                "message": event.message,
                "output": cursor.role.sees_output(event.output.clone()),
                "done": event.done,
                "total": event.total,
                "counted": words(event.tally(), JobStatus::Running),
                "at": event.at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            });
            chunk.push_str(&format!("id: {}\nevent: log\ndata: {data}\n\n", event.id));
            cursor.after = event.id;
        }
        if let Some(job) = &job
            && job.status.is_finished()
        {
            let data = serde_json::json!({
                "status": job.status,
                "counted": words(last, job.status),
                "outcome": job.outcome,
                "error": job.error,
                "at": job.finished_at.map(|at| at.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()),
            });
            chunk.push_str(&format!("event: end\ndata: {data}\n\n"));
            cursor.done = true;
        }
        if chunk.is_empty() {
            chunk.push_str(": waiting\n\n");
        }
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(chunk)), cursor))
    });
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header(("Cache-Control", "no-cache"))
        // Each event goes out as it comes, never held back by a compressor.
        .insert_header(actix_web::http::header::ContentEncoding::Identity)
        .streaming(stream))
}
