//! A shopping cart kept in ringkv: one key per cart, concurrent adds become siblings,
//! and every read merges them (set union) so no add is lost.

use std::collections::BTreeSet;

use bytes::Bytes;
use ringkv_client::{Client, ClientError, Consistency, ReadOptions, WriteOptions};

/// The cart service of one user.
pub struct Cart {
    client: Client,
    key: String,
}

impl Cart {
    /// The cart of `user`, kept through `client`.
    pub fn new(client: Client, user: &str) -> Cart {
        Cart {
            client,
            key: format!("cart:{user}"),
        }
    }

    /// The items in the cart: the union of every sibling.
    pub async fn items(&self) -> Result<BTreeSet<String>, ClientError> {
        let read = self.client.get(self.key.clone()).await?;
        Ok(read.siblings.iter().flat_map(|s| decode(&s.value)).collect())
    }

    /// Adds an item: read, merge the siblings, add, write back with the read's context.
    pub async fn add(&self, item: &str) -> Result<(), ClientError> {
        let one = Some(Consistency::One);
        let read = self
            .client
            .get_with(self.key.clone(), ReadOptions { consistency: one, timeout: None })
            .await?;
        let mut items: BTreeSet<String> = read.siblings.iter().flat_map(|s| decode(&s.value)).collect();
        items.insert(item.to_owned());
        let options = WriteOptions {
            consistency: one,
            ..WriteOptions::default()
        };
        self.client
            .put_with(self.key.clone(), encode(&items), &read.context, options)
            .await?;
        Ok(())
    }
}

/// The stored form of a set of items.
pub fn encode(items: &BTreeSet<String>) -> Bytes {
    Bytes::from(items.iter().cloned().collect::<Vec<_>>().join(","))
}

/// The items of a stored value.
pub fn decode(value: &[u8]) -> Vec<String> {
    std::str::from_utf8(value)
        .unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}
