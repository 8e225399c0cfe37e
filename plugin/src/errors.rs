//! Errors that say what to do: the CRD is missing, a verb is not granted, a name is misspelt.

/// What went wrong talking to the cluster, worded for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error(
        "the ManagedSecret CRD (managedsecrets.keyturn.dev) is not installed in this cluster: \
         install keyturn (helm install keyturn helm/keyturn) or apply \
         crds/keyturn.dev_managedsecrets.yaml"
    )]
    CrdMissing,
    #[error(
        "permission denied: you may not {verb} {resource} in {scope} ({message}); ask for a Role \
         granting `{verb}` on `{resource}`"
    )]
    Forbidden {
        verb: &'static str,
        resource: &'static str,
        scope: String,
        message: String,
    },
    #[error("ManagedSecret {name:?} not found in namespace {namespace}{hint}")]
    NotFound {
        name: String,
        namespace: String,
        hint: String,
    },
    #[error("cannot load the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{verb} {resource} in {scope}: {source}")]
    Api {
        verb: &'static str,
        resource: &'static str,
        scope: String,
        #[source]
        source: kube::Error,
    },
}

/// One API call, for wording its failure.
#[derive(Debug, Clone)]
pub struct Call {
    pub verb: &'static str,
    pub resource: &'static str,
    /// `namespace NS` or `all namespaces`.
    pub scope: String,
}

impl Call {
    pub fn new(verb: &'static str, resource: &'static str, namespace: Option<&str>) -> Call {
        Call {
            verb,
            resource,
            scope: match namespace {
                Some(namespace) => format!("namespace {namespace}"),
                None => "all namespaces".to_owned(),
            },
        }
    }

    /// The error for `source`, except a 404, which the caller judges (missing CRD or name).
    pub fn fail(&self, source: kube::Error) -> PluginError {
        match &source {
            kube::Error::Api(status) if status.code == 403 => PluginError::Forbidden {
                verb: self.verb,
                resource: self.resource,
                scope: self.scope.clone(),
                message: status.message.clone(),
            },
            _ => PluginError::Api {
                verb: self.verb,
                resource: self.resource,
                scope: self.scope.clone(),
                source,
            },
        }
    }
}

/// A 404: on a list, the resource type is unknown to the API server; on a get, the caller lists
/// to tell a missing type from a missing name.
pub fn is_not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}

/// Up to three names close to `wanted` (a shared prefix, one containing the other, or a few
/// edits apart), closest first.
pub fn close_names<'a>(wanted: &str, names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut scored: Vec<(usize, &str)> = names
        .into_iter()
        .filter_map(|name| {
            let distance = edit_distance(wanted, name);
            let related = name.contains(wanted) || wanted.contains(name);
            (distance <= 3.max(wanted.len() / 3) || related).then_some((distance, name))
        })
        .collect();
    scored.sort();
    scored
        .into_iter()
        .take(3)
        .map(|(_, name)| name.to_owned())
        .collect()
}

/// Levenshtein distance over characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1)
                .min(row[j] + 1)
                .min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The " (did you mean ...?)" tail of a not-found message, empty when nothing is close.
pub fn did_you_mean(candidates: &[String]) -> String {
    match candidates {
        [] => String::new(),
        names => format!("; did you mean {}?", names.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_names_prefer_few_edits_and_drop_unrelated_ones() {
        let names = ["orders-db", "orders", "billing", "inventory", "order"];
        assert_eq!(close_names("ordrs", names), vec!["orders", "order"]);
        // A name containing the one asked for counts, however far apart.
        assert_eq!(
            close_names("orders", ["orders-db", "billing"]),
            vec!["orders-db"]
        );
        assert_eq!(close_names("billng", names), vec!["billing"]);
        assert!(close_names("zzzzzz", names).is_empty());
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }

    #[test]
    fn forbidden_names_the_verb_and_the_resource() {
        let call = Call::new("patch", "managedsecrets.keyturn.dev", Some("payments"));
        let error = call.fail(kube::Error::Api(
            kube::core::Status::failure("user alice cannot patch", "Forbidden")
                .with_code(403)
                .boxed(),
        ));
        let text = error.to_string();
        assert!(
            text.contains("you may not patch managedsecrets.keyturn.dev in namespace payments"),
            "{text}"
        );
        assert!(text.contains("granting `patch`"), "{text}");
    }
}
