//! `sanctum policy ...`: the `--tenant`'s access grants.

use sanctum_storage::policy::{AccessPolicy, Grant};
use serde_json::json;

use super::Session;
use crate::cli::{GrantArgs, PolicyCommand, RevokeArgs};
use crate::output;

/// Runs a `policy` subcommand.
pub async fn run(session: &Session, cmd: PolicyCommand) -> anyhow::Result<()> {
    match cmd {
        PolicyCommand::Grant(args) => grant(session, args).await,
        PolicyCommand::Revoke(args) => revoke(session, args).await,
        PolicyCommand::Show => show(session).await,
    }
}

/// ` (keys under '<prefix>')`, or nothing for a grant on the whole namespace.
fn prefix_note(prefix: Option<&str>) -> String {
    prefix
        .map(|p| format!(" (keys under '{p}')"))
        .unwrap_or_default()
}

/// The grants as aligned text lines (`ACTOR  PERMISSION  NAMESPACE  (keys under '...')`),
/// sorted by actor, namespace and prefix; `no grants` when there are none.
fn grant_lines(policy: &AccessPolicy) -> Vec<String> {
    if policy.grants.is_empty() {
        return vec!["no grants".to_string()];
    }
    let mut grants: Vec<&Grant> = policy.grants.iter().collect();
    grants.sort_by(|a, b| {
        (&a.actor, &a.namespace, &a.key_prefix).cmp(&(&b.actor, &b.namespace, &b.key_prefix))
    });
    let actor_w = grants.iter().map(|g| g.actor.chars().count()).max();
    let ns_w = grants.iter().map(|g| g.namespace.chars().count()).max();
    let (actor_w, ns_w) = (actor_w.unwrap_or(0), ns_w.unwrap_or(0));
    grants
        .into_iter()
        .map(|g| {
            let line = format!(
                "{:<actor_w$}  {:<5}  {:<ns_w$} {}",
                g.actor,
                g.permission.as_str(),
                g.namespace,
                prefix_note(g.key_prefix.as_deref()),
            );
            line.trim_end().to_string()
        })
        .collect()
}

/// Prints the policy: one line per grant, or the JSON document.
fn print_policy(session: &Session, policy: &AccessPolicy) -> anyhow::Result<()> {
    if session.json {
        return output::json(policy);
    }
    for line in grant_lines(policy) {
        output::line(line)?;
    }
    Ok(())
}

/// `policy grant ACTOR PERMISSION --namespace NS [--prefix P]`: prints the resulting grants.
async fn grant(session: &Session, args: GrantArgs) -> anyhow::Result<()> {
    let grant = Grant {
        actor: args.actor,
        namespace: args.namespace,
        key_prefix: args.prefix,
        permission: args.permission.into(),
    };
    let policy = session
        .with_storage(async |s| Ok(s.policy().grant(&session.ctx, grant).await?))
        .await?;
    print_policy(session, &policy)
}

/// `policy revoke ACTOR --namespace NS [--prefix P]`: says how many grants went (0 is not an
/// error).
async fn revoke(session: &Session, args: RevokeArgs) -> anyhow::Result<()> {
    let RevokeArgs {
        actor,
        namespace,
        prefix,
    } = &args;
    let removed = session
        .with_storage(async |s| {
            Ok(s.policy()
                .revoke(&session.ctx, actor, namespace, prefix.as_deref())
                .await?)
        })
        .await?;
    if session.json {
        return output::json(&json!({
            "actor": actor,
            "namespace": namespace,
            "key_prefix": prefix,
            "removed": removed,
        }));
    }
    let target = format!("{actor} on {namespace}{}", prefix_note(prefix.as_deref()));
    match removed {
        0 => output::line(format_args!(
            "no grant of {target} to revoke (namespace and prefix must match exactly); nothing changed"
        )),
        1 => output::line(format_args!("revoked 1 grant of {target}")),
        n => output::line(format_args!("revoked {n} grants of {target}")),
    }
}

/// `policy show`: the tenant's grants.
async fn show(session: &Session) -> anyhow::Result<()> {
    let policy = session
        .with_storage(async |s| Ok(s.policy().show(&session.ctx).await?))
        .await?;
    print_policy(session, &policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sanctum_storage::policy::Permission;

    #[test]
    fn grants_print_as_aligned_sorted_lines() {
        assert_eq!(grant_lines(&AccessPolicy::default()), ["no grants"]);
        let policy = AccessPolicy {
            grants: vec![
                Grant::new("bob", "*", None, Permission::Admin),
                Grant::new("alice", "docs", Some("pub/"), Permission::Write),
                Grant::new("alice", "docs", None, Permission::Read),
            ],
        };
        assert_eq!(
            grant_lines(&policy),
            [
                "alice  read   docs",
                "alice  write  docs  (keys under 'pub/')",
                "bob    admin  *",
            ]
        );
    }
}
