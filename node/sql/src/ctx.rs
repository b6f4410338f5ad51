//! Chain context seen by contract code: `sender()`, `block_height()`,
//! `block_time()`, `tx_hash()`, `contract_address()`, `balance(addr)`,
//! `send(to, amount)` and `amount()` (the aer attached to the call).

use std::collections::BTreeMap;

/// What a contract can ask the chain. Implemented by the node; [`MockChain`]
/// serves tests and the sandbox. `send` must be part of the transaction's
/// write set: when the call fails the chain discards it with everything else.
pub trait ChainContext {
    /// Address of the transaction's signer.
    fn sender(&self) -> String;
    /// Height of the block being executed.
    fn block_height(&self) -> u64;
    /// Block timestamp, seconds since the Unix epoch.
    fn block_time(&self) -> i64;
    /// Transaction hash, lowercase hex.
    fn tx_hash(&self) -> String;
    /// This contract's address.
    fn contract_address(&self) -> String;
    /// Aer attached to the call.
    fn amount(&self) -> u128;
    /// Native balance of an address in aer.
    fn balance(&self, addr: &str) -> Result<u128, String>;
    /// Moves aer from the contract's account to `to`.
    fn send(&mut self, to: &str, amount: u128) -> Result<(), String>;
}

/// In-memory chain context for tests and the sandbox.
#[derive(Debug, Clone, Default)]
pub struct MockChain {
    /// Returned by `sender()`.
    pub sender: String,
    /// Returned by `block_height()`.
    pub height: u64,
    /// Returned by `block_time()`.
    pub time: i64,
    /// Returned by `tx_hash()`.
    pub tx_hash: String,
    /// Returned by `contract_address()`.
    pub contract: String,
    /// Returned by `amount()`.
    pub amount: u128,
    /// Native balances.
    pub balances: BTreeMap<String, u128>,
}

impl ChainContext for MockChain {
    fn sender(&self) -> String {
        self.sender.clone()
    }
    fn block_height(&self) -> u64 {
        self.height
    }
    fn block_time(&self) -> i64 {
        self.time
    }
    fn tx_hash(&self) -> String {
        self.tx_hash.clone()
    }
    fn contract_address(&self) -> String {
        self.contract.clone()
    }
    fn amount(&self) -> u128 {
        self.amount
    }
    fn balance(&self, addr: &str) -> Result<u128, String> {
        Ok(self.balances.get(addr).copied().unwrap_or(0))
    }
    fn send(&mut self, to: &str, amount: u128) -> Result<(), String> {
        let from = self.balances.get(&self.contract).copied().unwrap_or(0);
        let rest = from
            .checked_sub(amount)
            .ok_or_else(|| format!("insufficient contract balance: {from} < {amount}"))?;
        self.balances.insert(self.contract.clone(), rest);
        let to_bal = self.balances.get(to).copied().unwrap_or(0);
        let new = to_bal
            .checked_add(amount)
            .ok_or_else(|| "balance overflow".to_string())?;
        self.balances.insert(to.to_string(), new);
        Ok(())
    }
}
