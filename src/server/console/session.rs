//! Who may use the console: users from settings, argon2 passwords, expiring sessions.
//!
//! A session is a 256-bit random cookie; only its SHA-256 digest is kept, so a memory dump
//! does not hand out live sessions. Each session has its own CSRF token, which every
//! state-changing request must echo. Failed logins are limited per client address, and
//! password checks run on the blocking pool, at most two at once, so a login flood cannot
//! take the CPU from the callers' speech recognition.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;

use crate::config::{ConsoleRole, ConsoleSettings};

pub const COOKIE: &str = "warmline_console";

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("console user {index} ({name:?}): password_hash is not an argon2 PHC string: {why}")]
    BadHash {
        index: usize,
        name: String,
        why: String,
    },
    #[error("console user name {0:?} appears twice")]
    Duplicate(String),
    #[error("console user {0}: the name must be 1 to 64 characters")]
    BadName(usize),
    #[error("hashing the password failed: {0}")]
    Hash(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Wrong name or password; the two are not told apart.
    Refused,
    /// Too many failures from this address; try again after this long.
    Wait(Duration),
}

struct User {
    name: String,
    role: ConsoleRole,
    hash: String,
}

#[derive(Debug, Clone)]
pub struct Session {
    pub user: String,
    pub role: ConsoleRole,
    pub csrf: String,
    pub expires: Instant,
}

struct Failures {
    window_start: Instant,
    count: u32,
}

pub struct Sessions {
    users: Vec<User>,
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<IpAddr, Failures>>,
    lifetime: Duration,
    failures_per_minute: u32,
    /// Compared against when the name is unknown, so a wrong name costs what a wrong
    /// password costs and response time does not tell which names exist.
    decoy: String,
    hashing: Semaphore,
    /// Cookies get `Secure` when the console is served over https.
    pub secure: bool,
}

/// Sessions one process keeps at most; the oldest expire first when a flood of logins
/// by valid users would pass it.
const MAX_SESSIONS: usize = 10_000;
/// Client addresses tracked for failed logins at most.
const MAX_TRACKED: usize = 10_000;

impl Sessions {
    pub fn new(settings: &ConsoleSettings, public_url: &str) -> Result<Sessions, ConsoleError> {
        let mut users: Vec<User> = Vec::new();
        for (index, u) in settings.users.iter().enumerate() {
            let name = u.name.trim().to_string();
            if name.is_empty() || name.chars().count() > 64 {
                return Err(ConsoleError::BadName(index));
            }
            if users.iter().any(|x| x.name == name) {
                return Err(ConsoleError::Duplicate(name));
            }
            PasswordHash::new(&u.password_hash).map_err(|e| ConsoleError::BadHash {
                index,
                name: name.clone(),
                why: e.to_string(),
            })?;
            users.push(User {
                name,
                role: u.role,
                hash: u.password_hash.clone(),
            });
        }
        // Servers without console users (most tests, most deployments at first) skip the
        // cost of hashing a decoy.
        let decoy = if users.is_empty() {
            String::new()
        } else {
            hash_password(&random_hex(16))?
        };
        Ok(Sessions {
            users,
            sessions: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            lifetime: Duration::from_secs(settings.session_minutes.max(1) * 60),
            failures_per_minute: settings.login_failures_per_minute.max(1),
            decoy,
            hashing: Semaphore::new(2),
            secure: public_url.starts_with("https://"),
        })
    }

    pub fn has_users(&self) -> bool {
        !self.users.is_empty()
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The session a cookie header carries, if it is live.
    pub fn from_cookie_header(&self, cookie: Option<&str>) -> Option<Session> {
        let token = cookie?
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == COOKIE)
            .map(|(_, v)| v.trim())?;
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Some(s.clone()),
            Some(_) => {
                sessions.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Checks a name and password; on success returns the new session's cookie value.
    pub async fn login(
        &self,
        client: Option<IpAddr>,
        name: &str,
        password: &str,
    ) -> Result<(String, Session), LoginError> {
        if let Some(wait) = self.must_wait(client) {
            return Err(LoginError::Wait(wait));
        }
        if self.users.is_empty() {
            return Err(LoginError::Refused);
        }
        let user = self.users.iter().find(|u| u.name == name.trim());
        let hash = user.map_or(self.decoy.clone(), |u| u.hash.clone());
        let ok = {
            // A closed semaphore cannot happen (never closed); treat it as a refusal.
            let Ok(_permit) = self.hashing.acquire().await else {
                return Err(LoginError::Refused);
            };
            let password = password.to_string();
            tokio::task::spawn_blocking(move || verify_password(&hash, &password))
                .await
                .unwrap_or(false)
        };
        let Some(user) = user.filter(|_| ok) else {
            self.failed(client);
            return Err(LoginError::Refused);
        };
        let token = random_hex(32);
        let session = Session {
            user: user.name.clone(),
            role: user.role,
            csrf: random_hex(16),
            expires: Instant::now() + self.lifetime,
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                sessions.remove(&k);
            }
        }
        sessions.insert(key, session.clone());
        Ok((token, session))
    }

    pub fn logout(&self, cookie: Option<&str>) {
        let Some(token) = cookie.and_then(|c| {
            c.split(';')
                .filter_map(|c| c.trim().split_once('='))
                .find(|(k, _)| *k == COOKIE)
                .map(|(_, v)| v.trim().to_string())
        }) else {
            return;
        };
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key);
    }

    /// Ends every session of `user`; how many there were.
    pub fn revoke(&self, user: &str) -> usize {
        let mut sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let before = sessions.len();
        sessions.retain(|_, s| s.user != user);
        before - sessions.len()
    }

    /// Users from settings with their role and live session count.
    pub fn users(&self) -> Vec<(String, ConsoleRole, usize)> {
        let sessions = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        self.users
            .iter()
            .map(|u| {
                let live = sessions
                    .values()
                    .filter(|s| s.user == u.name && s.expires > now)
                    .count();
                (u.name.clone(), u.role, live)
            })
            .collect()
    }

    pub fn is_live(&self, user: &str, csrf: &str) -> bool {
        let now = Instant::now();
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .any(|s| s.user == user && s.csrf == csrf && s.expires > now)
    }

    fn must_wait(&self, client: Option<IpAddr>) -> Option<Duration> {
        let client = client?;
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let f = failures.get(&client)?;
        let elapsed = f.window_start.elapsed();
        (f.count >= self.failures_per_minute && elapsed < WINDOW).then(|| WINDOW - elapsed)
    }

    fn failed(&self, client: Option<IpAddr>) {
        let Some(client) = client else { return };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| f.window_start.elapsed() < WINDOW);
        }
        if failures.len() >= MAX_TRACKED {
            // Still full of fresh entries: a distributed flood. Keep counting the newcomer by
            // evicting one; the hashing semaphore still bounds the cost.
            if let Some(k) = failures.keys().next().copied() {
                failures.remove(&k);
            }
        }
        let f = failures.entry(client).or_insert(Failures {
            window_start: Instant::now(),
            count: 0,
        });
        if f.window_start.elapsed() >= WINDOW {
            *f = Failures {
                window_start: Instant::now(),
                count: 0,
            };
        }
        f.count += 1;
    }
}

const WINDOW: Duration = Duration::from_secs(60);

/// An argon2id PHC string for `password` with a fresh salt (the crate's default cost).
pub fn hash_password(password: &str) -> Result<String, ConsoleError> {
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes);
    let salt = SaltString::encode_b64(&bytes).map_err(|e| ConsoleError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ConsoleError::Hash(e.to_string()))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

pub fn constant_time_str_eq(a: &str, b: &str) -> bool {
    crate::server::auth::constant_time_eq(a.as_bytes(), b.as_bytes())
}

pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConsoleUser;

    fn sessions(limit: u32) -> Sessions {
        let settings = ConsoleSettings {
            users: vec![ConsoleUser {
                name: "ana".into(),
                role: ConsoleRole::Admin,
                password_hash: hash_password("correct horse").unwrap(),
            }],
            session_minutes: 1,
            login_failures_per_minute: limit,
        };
        Sessions::new(&settings, "https://line.example.com").unwrap()
    }

    #[tokio::test]
    async fn right_password_opens_a_session_and_wrong_ones_do_not() {
        let s = sessions(5);
        assert!(s.secure);
        let ip = Some("10.0.0.1".parse().unwrap());
        assert_eq!(
            s.login(ip, "ana", "wrong").await.err(),
            Some(LoginError::Refused)
        );
        assert_eq!(
            s.login(ip, "bob", "correct horse").await.err(),
            Some(LoginError::Refused)
        );
        let (token, session) = s.login(ip, "ana", "correct horse").await.unwrap();
        assert_eq!(session.role, ConsoleRole::Admin);
        let header = format!("other=1; {COOKIE}={token}");
        assert_eq!(s.from_cookie_header(Some(&header)).unwrap().user, "ana");
        assert!(
            s.from_cookie_header(Some(&format!("{COOKIE}=x{token}")))
                .is_none()
        );
        s.logout(Some(&header));
        assert!(s.from_cookie_header(Some(&header)).is_none());
    }

    #[tokio::test]
    async fn failures_from_one_address_are_limited_others_are_not() {
        let s = sessions(2);
        let a = Some("10.0.0.1".parse().unwrap());
        let b = Some("10.0.0.2".parse().unwrap());
        for _ in 0..2 {
            assert_eq!(
                s.login(a, "ana", "x").await.err(),
                Some(LoginError::Refused)
            );
        }
        // Even the right password waits: the limit is on the address, not the guess.
        assert!(matches!(
            s.login(a, "ana", "correct horse").await,
            Err(LoginError::Wait(_))
        ));
        assert!(s.login(b, "ana", "correct horse").await.is_ok());
    }

    #[tokio::test]
    async fn a_session_ends_when_its_time_is_up() {
        let mut s = sessions(5);
        s.lifetime = Duration::from_millis(50);
        let (token, _) = s.login(None, "ana", "correct horse").await.unwrap();
        let header = format!("{COOKIE}={token}");
        assert!(s.from_cookie_header(Some(&header)).is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(s.from_cookie_header(Some(&header)).is_none());
        assert_eq!(s.users()[0].2, 0, "expired sessions are not counted");
    }

    #[test]
    fn bad_settings_are_refused_with_the_user() {
        let mut settings = ConsoleSettings::default();
        settings.users.push(ConsoleUser {
            name: "ana".into(),
            role: ConsoleRole::Agent,
            password_hash: "hunter2".into(),
        });
        let e = Sessions::new(&settings, "http://x").err().unwrap();
        assert!(e.to_string().contains("\"ana\""), "{e}");
    }
}
