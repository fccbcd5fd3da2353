//! Forms whose fields repeat (rows of a table, ticked boxes), read as the name/value pairs
//! the browser sent, in order.

pub struct Pairs(Vec<(String, String)>);

/// The form of the buttons that start work in the background (Export, Preview, Pull now):
/// its boxes are ticked when the browser sends `yes`.
#[derive(serde::Deserialize)]
pub struct StartForm {
    /// "Send everyone again" / a full pull, rather than only what changed.
    #[serde(default)]
    full: Option<String>,
    /// Go ahead although the preview found problems.
    #[serde(default)]
    confirm: Option<String>,
}

impl StartForm {
    pub fn full(&self) -> bool {
        self.full.as_deref() == Some("yes")
    }

    pub fn confirmed(&self) -> bool {
        self.confirm.as_deref() == Some("yes")
    }
}

/// A form's body, read as its pairs.
impl<S: Send + Sync> axum::extract::FromRequest<S> for Pairs {
    type Rejection = axum::extract::rejection::FormRejection;

    async fn from_request(
        request: axum::extract::Request,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        let axum::Form(pairs) =
            axum::Form::<Vec<(String, String)>>::from_request(request, state).await?;
        Ok(Self(pairs))
    }
}

impl Pairs {
    /// The first value sent for `key`, or an empty text.
    pub fn get(&self, key: &str) -> String {
        self.all(key).next().unwrap_or_default().to_owned()
    }

    /// Every value sent for `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The numbers of the rows whose fields are named `prefix` and a number, ascending,
    /// each once.
    pub fn rows(&self, prefix: &str) -> Vec<usize> {
        let mut rows: Vec<usize> = self
            .0
            .iter()
            .filter_map(|(k, _)| k.strip_prefix(prefix).and_then(|n| n.parse().ok()))
            .collect();
        rows.sort_unstable();
        rows.dedup();
        rows
    }
}

/// A row's Remove button (its action `{prefix}N`): row N leaves `rows`, and everything else
/// typed stays. True when the action was such a button (a number past the rows removes
/// nothing).
pub fn remove_row<T>(action: &str, prefix: &str, rows: &mut Vec<T>) -> bool {
    let Some(index) = action
        .strip_prefix(prefix)
        .and_then(|n| n.parse::<usize>().ok())
    else {
        return false;
    };
    if index < rows.len() {
        rows.remove(index);
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_rows_and_repeats_are_read_in_order() {
        let pairs = Pairs(
            [
                ("tag_2", "B"),
                ("tag_0", "A"),
                ("tag_2", "C"),
                ("x", "1"),
                ("x", "2"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        assert_eq!(pairs.get("x"), "1");
        assert_eq!(pairs.get("missing"), "");
        assert_eq!(pairs.all("x").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(pairs.rows("tag_"), [0, 2]);
    }

    #[test]
    fn a_remove_button_takes_its_row_and_nothing_else() {
        let mut rows = vec!["FNAME", "LNAME", "CITY"];
        assert!(remove_row("remove:1", "remove:", &mut rows));
        assert_eq!(rows, ["FNAME", "CITY"]);
        assert!(
            remove_row("remove:9", "remove:", &mut rows),
            "a stale row number"
        );
        assert_eq!(rows, ["FNAME", "CITY"]);
        assert!(!remove_row("save", "remove:", &mut rows));
        assert!(!remove_row("remove:x", "remove:", &mut rows));
        assert_eq!(rows.len(), 2);
    }
}
