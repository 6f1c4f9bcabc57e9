//! Named users: a feature's seats assigned to users by name.
//!
//! A feature record sold for named users (`named_user` in the record, from a back-office
//! `named_user` line) is served by a license server only to the users its administrator assigned
//! to the feature; anyone else is refused with `not_authorised`, naming the feature. A feature has
//! as many named users as its named-user records hold seats: assigning more **trims** the excess
//! (the users named last) and says who was trimmed. Each assigned user takes seats like anyone
//! else (a lease per request, returned or expired as usual), within the count.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::feature::Feature;

/// The users assigned per feature: the document the license server stores.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedUsers {
    /// Per feature name, its users in the order they were assigned.
    pub features: BTreeMap<String, Vec<String>>,
}

/// Why an assignment was refused: what is wrong. Nothing changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NamedUserError {
    /// A user name is empty, too long or holds control characters.
    #[error("user {user:?} of {feature}: a user name is 1 to 256 printable characters")]
    BadUser {
        /// The feature.
        feature: String,
        /// The name given.
        user: String,
    },
    /// A user named twice for one feature.
    #[error("user {user} is named twice for {feature}")]
    Twice {
        /// The feature.
        feature: String,
        /// The user.
        user: String,
    },
    /// The feature is not sold for named users on this server.
    #[error("{feature} is not a named-user feature on this server (its records are not sold for named users)")]
    NotNamedUser {
        /// The feature.
        feature: String,
    },
}

/// One feature's assignment after trimming.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignment {
    /// The feature.
    pub feature: String,
    /// Seats its named-user records hold (how many users it may have).
    pub seats: u64,
    /// The users served.
    pub users: Vec<String>,
    /// Users assigned beyond the seats: not served.
    pub trimmed: Vec<String>,
}

impl NamedUsers {
    /// Checks the users given for `feature` (names, no name twice).
    pub fn check_users(feature: &str, users: &[String]) -> Result<(), NamedUserError> {
        let mut seen = BTreeSet::new();
        for u in users {
            if u.trim().is_empty() || u.chars().count() > 256 || u.chars().any(char::is_control) {
                return Err(NamedUserError::BadUser {
                    feature: feature.into(),
                    user: u.clone(),
                });
            }
            if !seen.insert(u.as_str()) {
                return Err(NamedUserError::Twice {
                    feature: feature.into(),
                    user: u.clone(),
                });
            }
        }
        Ok(())
    }

    /// Seats of named-user records of `feature` among `records`.
    pub fn seats(records: &[Feature], feature: &str) -> Option<u64> {
        let named: Vec<&Feature> = records
            .iter()
            .filter(|f| f.name == feature && f.named_user)
            .collect();
        if named.is_empty() {
            return None;
        }
        Some(
            named
                .iter()
                .map(|f| f.count.get().map_or(u64::MAX, u64::from))
                .fold(0u64, u64::saturating_add),
        )
    }

    /// Every named-user feature of `records` with its users after trimming (a feature with no
    /// users assigned is listed with none). Assignments of features no record sells for named
    /// users are left out (kept, and served again when such a record comes back).
    pub fn assign(&self, records: &[Feature]) -> Vec<Assignment> {
        let names: BTreeSet<&str> = records
            .iter()
            .filter(|f| f.named_user)
            .map(|f| f.name.as_str())
            .collect();
        names
            .into_iter()
            .map(|name| {
                let seats = NamedUsers::seats(records, name).unwrap_or(0);
                let all = self.features.get(name).cloned().unwrap_or_default();
                let keep = usize::try_from(seats).unwrap_or(usize::MAX).min(all.len());
                Assignment {
                    feature: name.to_string(),
                    seats,
                    users: all[..keep].to_vec(),
                    trimmed: all[keep..].to_vec(),
                }
            })
            .collect()
    }

    /// Who may take seats of each named-user feature: feature name → users (after trimming).
    pub fn allowed(&self, records: &[Feature]) -> HashMap<String, HashSet<String>> {
        self.assign(records)
            .into_iter()
            .map(|a| (a.feature, a.users.into_iter().collect()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feature::Count;

    fn rec(name: &str, count: u32, named: bool) -> Feature {
        let mut f = Feature::new(name, "1.0".parse().unwrap(), Count::Counted(count));
        f.named_user = named;
        f
    }

    #[test]
    fn more_users_than_seats_are_trimmed_last_first() {
        let records = vec![
            rec("cad", 2, true),
            rec("cad", 1, true),
            rec("cam", 5, false),
        ];
        let mut n = NamedUsers::default();
        n.features.insert(
            "cad".into(),
            ["ann", "bob", "cy", "dee"].map(String::from).to_vec(),
        );
        n.features.insert("cam".into(), vec!["ann".into()]);
        let a = n.assign(&records);
        assert_eq!(a.len(), 1, "cam is not sold for named users: {a:?}");
        assert_eq!(a[0].seats, 3);
        assert_eq!(a[0].users, vec!["ann", "bob", "cy"]);
        assert_eq!(a[0].trimmed, vec!["dee"]);
        assert!(n.allowed(&records)["cad"].contains("cy"));
        assert_eq!(NamedUsers::seats(&records, "cam"), None);
    }

    #[test]
    fn bad_names_and_names_twice_are_refused() {
        assert!(matches!(
            NamedUsers::check_users("cad", &["ann".into(), "ann".into()]),
            Err(NamedUserError::Twice { .. })
        ));
        assert!(matches!(
            NamedUsers::check_users("cad", &[" ".into()]),
            Err(NamedUserError::BadUser { .. })
        ));
        assert!(NamedUsers::check_users("cad", &["ann".into(), "bob".into()]).is_ok());
    }
}
