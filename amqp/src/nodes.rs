//! The broker nodes a role may connect to. `PICKET_AMQP_URL` is one URL or a
//! comma-separated list of them (the nodes of a cluster, each with its own
//! credentials and vhost or the same). A role tries them in an order
//! shuffled at start, so the runners of a fleet spread over the nodes, and
//! moves to the next one after a failed attempt or a lost connection.

use lapin::uri::AMQPUri;

/// One node: its parsed URL, and the `host:port` that logs and `/readyz`
/// show (never the URL, which may hold a password).
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) uri: AMQPUri,
    pub(crate) url: String,
    pub(crate) name: String,
}

/// The nodes in the order this process tries them.
#[derive(Clone)]
pub struct BrokerNodes(Vec<Node>);

impl BrokerNodes {
    /// Parses the list; an error names the entry by position, never by its
    /// text.
    pub fn parse(list: &str) -> Result<Self, String> {
        let entries: Vec<&str> = list.split(',').map(str::trim).collect();
        let mut nodes = Vec::with_capacity(entries.len());
        for (i, url) in entries.iter().enumerate() {
            let position =
                if entries.len() == 1 { String::new() } else { format!("entry {} of {}: ", i + 1, entries.len()) };
            if url.is_empty() {
                return Err(format!("{position}empty (a list is comma-separated URLs)"));
            }
            let uri = url.parse::<AMQPUri>().map_err(|e| {
                format!("{position}not an amqp:// or amqps:// URL ({})", redact_one(&e.to_string(), url))
            })?;
            let name = format!("{}:{}", uri.authority.host, uri.authority.port);
            nodes.push(Node { uri, url: (*url).to_owned(), name });
        }
        Ok(Self(nodes))
    }

    /// The same nodes in a random order, so that processes started with one
    /// list do not all crowd the first node.
    pub(crate) fn shuffled(mut self) -> Self {
        fastrand::shuffle(&mut self.0);
        self
    }

    /// The node to try on attempt `n`: each in turn, then round again.
    pub(crate) fn nth(&self, n: usize) -> &Node {
        &self.0[n % self.0.len()]
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// Removes every URL of the list (and so every password) from a text.
    pub(crate) fn redact(&self, text: &str) -> String {
        self.0.iter().fold(text.to_owned(), |text, node| redact_one(&text, &node.url))
    }
}

fn redact_one(text: &str, url: &str) -> String {
    text.replace(url, "<PICKET_AMQP_URL>")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_names_each_node_by_host_and_port_only() {
        let nodes = BrokerNodes::parse("amqp://u:pw1@10.0.0.1:5681/%2f, amqps://v:pw2@mq.example:5671/prod").unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(nodes.nth(0).name, "10.0.0.1:5681");
        assert_eq!(nodes.nth(1).name, "mq.example:5671");
        assert_eq!(nodes.nth(2).name, "10.0.0.1:5681", "after the last comes the first again");
        let redacted = nodes.redact("failed amqp://u:pw1@10.0.0.1:5681/%2f then amqps://v:pw2@mq.example:5671/prod");
        assert!(!redacted.contains("pw1") && !redacted.contains("pw2"), "{redacted}");
    }

    #[test]
    fn a_single_url_is_a_list_of_one() {
        let nodes = BrokerNodes::parse("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes.shuffled().nth(7).name, "127.0.0.1:5672");
    }

    #[test]
    fn a_bad_entry_is_named_by_position_without_its_text() {
        let error = BrokerNodes::parse("amqp://u:secretpw@h:1/%2f,http://u:secretpw@h/").err().unwrap();
        assert!(error.starts_with("entry 2 of 2: not an amqp://"), "{error}");
        assert!(!error.contains("secretpw"), "{error}");
        let error = BrokerNodes::parse("amqp://u:p@h:1/%2f,,amqp://u:p@h:2/%2f").err().unwrap();
        assert!(error.starts_with("entry 2 of 3: empty"), "{error}");
        let error = BrokerNodes::parse("nope").err().unwrap();
        assert!(error.starts_with("not an amqp://"), "{error}");
    }

    #[test]
    fn shuffling_keeps_every_node() {
        let list = (1..=5).map(|i| format!("amqp://g:g@127.0.0.1:{}/%2f", 5680 + i)).collect::<Vec<_>>().join(",");
        let shuffled = BrokerNodes::parse(&list).unwrap().shuffled();
        let mut nodes: Vec<String> = (0..5).map(|i| shuffled.nth(i).name.clone()).collect();
        nodes.sort();
        assert_eq!(nodes, (1..=5).map(|i| format!("127.0.0.1:{}", 5680 + i)).collect::<Vec<_>>());
    }
}
