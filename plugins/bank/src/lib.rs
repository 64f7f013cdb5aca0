//! Bank: accounts holding `u64` balances with atomic transfers; the plugin fault tests use to check that money is conserved.
//!
//! Wire format (JSON; account ids are strings, amounts `u64`):
//!
//! | call  | input | output |
//! |-------|-------|--------|
//! | apply | `{"open":{"account":"alice"}}` or `{"open":{"account":"alice","initial":100}}` | `{"balance":100}` |
//! | apply | `{"deposit":{"account":"alice","amount":5}}` | `{"balance":105}` |
//! | apply | `{"withdraw":{"account":"alice","amount":5}}` | `{"balance":100}` |
//! | apply | `{"transfer":{"from":"alice","to":"bob","amount":30}}` | `{"from_balance":70,"to_balance":30}` |
//! | query | `{"balance":{"account":"alice"}}` | `{"balance":70}` |
//! | query | `{"total":{}}` | `{"total":100,"accounts":2}` |
//!
//! Errors: `account-exists`, `no-such-account`, `insufficient-funds`,
//! `overflow` (a balance would pass `u64::MAX`), `bad-input`. A failed command
//! changes nothing. A transfer emits event `transfer` with payload
//! `{"from":"alice","to":"bob","amount":30}`. `total` sums every balance (as
//! a JSON integer that may exceed `u64`), so it is invariant under transfers.

use cairn_sdk::{Ctx, Map, Plugin, PluginError, export_plugin};
use serde::{Deserialize, Serialize};

/// Commands for `apply`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Command {
    /// Creates an account with balance `initial` (default 0).
    Open {
        account: String,
        #[serde(default)]
        initial: u64,
    },
    /// Adds `amount` to an account.
    Deposit { account: String, amount: u64 },
    /// Takes `amount` from an account.
    Withdraw { account: String, amount: u64 },
    /// Moves `amount` between two accounts, all or nothing.
    Transfer {
        from: String,
        to: String,
        amount: u64,
    },
}

/// Queries for `query`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Query {
    /// One account's balance.
    Balance { account: String },
    /// The sum of all balances and the number of accounts.
    Total {},
}

/// Outputs; each variant serializes as a flat object (see the crate docs).
#[derive(Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Output {
    /// An account's balance after the call.
    Balance { balance: u64 },
    /// Both balances after a transfer.
    Transfer { from_balance: u64, to_balance: u64 },
    /// The sum of all balances.
    Total { total: u128, accounts: u64 },
}

/// The payload of a `transfer` event.
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub struct TransferEvent {
    /// Paying account.
    pub from: String,
    /// Receiving account.
    pub to: String,
    /// Amount moved.
    pub amount: u64,
}

const BALANCES: Map<&str, u64> = Map::new("balance");

fn balance(ctx: &Ctx, account: &str) -> Result<u64, PluginError> {
    BALANCES
        .load(ctx, account)?
        .ok_or_else(|| PluginError::new("no-such-account", format!("no account {account:?}")))
}

fn credit(balance: u64, amount: u64, account: &str) -> Result<u64, PluginError> {
    balance
        .checked_add(amount)
        .ok_or_else(|| PluginError::new("overflow", format!("{account:?} would pass u64::MAX")))
}

fn debit(balance: u64, amount: u64, account: &str) -> Result<u64, PluginError> {
    balance.checked_sub(amount).ok_or_else(|| {
        let msg = format!("{account:?} holds {balance}, cannot pay {amount}");
        PluginError::new("insufficient-funds", msg)
    })
}

/// The plugin.
pub struct Bank;

impl Plugin for Bank {
    type Command = Command;
    type Output = Output;
    type Query = Query;
    type QueryOutput = Output;

    fn apply(ctx: &mut Ctx, command: Command) -> Result<Output, PluginError> {
        // Every check happens before the first write, so a failure leaves
        // nothing behind even without the host's rollback.
        let (account, balance) = match command {
            Command::Open { account, initial } => {
                if BALANCES.has(ctx, &account) {
                    let msg = format!("account {account:?} already exists");
                    return Err(PluginError::new("account-exists", msg));
                }
                (account, initial)
            }
            Command::Deposit { account, amount } => {
                let new = credit(balance(ctx, &account)?, amount, &account)?;
                (account, new)
            }
            Command::Withdraw { account, amount } => {
                let new = debit(balance(ctx, &account)?, amount, &account)?;
                (account, new)
            }
            Command::Transfer { from, to, amount } => return transfer(ctx, from, to, amount),
        };
        BALANCES.save(ctx, &account, &balance)?;
        Ok(Output::Balance { balance })
    }

    fn query(ctx: &Ctx, query: Query) -> Result<Output, PluginError> {
        match query {
            Query::Balance { account } => Ok(Output::Balance {
                balance: balance(ctx, &account)?,
            }),
            Query::Total {} => {
                let (mut total, mut accounts) = (0u128, 0u64);
                for entry in BALANCES.iter(ctx, None, None) {
                    total += u128::from(entry?.1);
                    accounts += 1;
                }
                Ok(Output::Total { total, accounts })
            }
        }
    }
}

fn transfer(ctx: &mut Ctx, from: String, to: String, amount: u64) -> Result<Output, PluginError> {
    let (from_old, to_old) = (balance(ctx, &from)?, balance(ctx, &to)?);
    // The debit checks funds even when paying oneself, which then moves nothing.
    let debited = debit(from_old, amount, &from)?;
    let (from_balance, to_balance) = if from == to {
        (from_old, from_old)
    } else {
        (debited, credit(to_old, amount, &to)?)
    };
    BALANCES.save(ctx, &from, &from_balance)?;
    BALANCES.save(ctx, &to, &to_balance)?;
    ctx.emit_json("transfer", &TransferEvent { from, to, amount })?;
    Ok(Output::Transfer {
        from_balance,
        to_balance,
    })
}

export_plugin!(Bank);
