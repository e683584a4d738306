//! Which extended attributes a layer may set.
//!
//! Kept: `user.*`; the POSIX ACLs `system.posix_acl_access` and
//! `system.posix_acl_default`; `security.capability` (file capabilities) and
//! `trusted.*` when privileged (they need root to set).
//! Refused, with a warning: `trusted.overlay.*` (a layer must not forge overlayfs
//! whiteouts or redirects), `security.selinux`, `security.ima`, `security.evm`
//! (host policy, labelled by the runtime, never by an image), and anything else
//! (unknown namespaces are not applied blindly).

/// What to do with one xattr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XattrDecision {
    /// Set it.
    Keep,
    /// Do not set it; the reason goes into the report's warnings.
    Skip(&'static str),
}

/// The policy for `name`, for a privileged (root) or unprivileged extraction.
pub fn xattr_policy(name: &str, privileged: bool) -> XattrDecision {
    match name {
        "system.posix_acl_access" | "system.posix_acl_default" => XattrDecision::Keep,
        "security.capability" if privileged => XattrDecision::Keep,
        "security.capability" => XattrDecision::Skip("file capabilities need root"),
        "security.selinux" | "security.ima" | "security.evm" => {
            XattrDecision::Skip("host security labels are set by the runtime, not by images")
        }
        n if n.starts_with("trusted.overlay.") || n.starts_with("user.overlay.") => {
            XattrDecision::Skip("overlayfs metadata must not come from a layer")
        }
        n if n.starts_with("trusted.") && privileged => XattrDecision::Keep,
        n if n.starts_with("trusted.") => XattrDecision::Skip("trusted.* needs root"),
        n if n.starts_with("user.") => XattrDecision::Keep,
        _ => XattrDecision::Skip("namespace not in the keep list"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_table() {
        for (name, privileged, keep) in [
            ("user.foo", false, true),
            ("system.posix_acl_access", false, true),
            ("system.posix_acl_default", true, true),
            ("security.capability", true, true),
            ("security.capability", false, false),
            ("trusted.x", true, true),
            ("trusted.x", false, false),
            ("trusted.overlay.opaque", true, false),
            ("security.selinux", true, false),
            ("system.nfs4_acl", true, false),
        ] {
            assert_eq!(xattr_policy(name, privileged) == XattrDecision::Keep, keep, "{name} {privileged}");
        }
    }
}
