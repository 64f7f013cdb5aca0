//! Fuel for host imports and the per-call byte budgets: what a guest pays for
//! crossing into the host, so no call can make the host do unbounded work.
//!
//! A host import costs `fuel_per_host_call + fuel_per_host_byte × bytes` (the
//! bytes it moves either way). The charge is taken from the store's fuel, the
//! same counter guest instructions burn, so running short is the ordinary
//! `out-of-fuel` outcome — decided by sizes only, hence identical on every node.
//! Imports charge *before* they copy or gather anything, so the host never does
//! work the call could not pay for.

use wasmtime::{StoreContextMut, Trap};

use super::store::{Budget, CallState};

/// What a host call may still move: the fuel left and the per-byte price.
pub(super) struct Allowance {
    fuel: u64,
    per_byte: u64,
}

impl Allowance {
    /// Whether `bytes` more can be paid for.
    pub(super) fn affords(&self, bytes: usize) -> bool {
        self.per_byte.saturating_mul(bytes as u64) <= self.fuel
    }
}

/// Charges one host call moving `bytes`; traps with `OutOfFuel` (taking all
/// that is left) when the call cannot pay.
pub(super) fn charge(
    store: &mut StoreContextMut<'_, CallState>,
    bytes: usize,
) -> wasmtime::Result<()> {
    let limits = &store.data().limits;
    let cost = limits
        .fuel_per_host_call
        .saturating_add(limits.fuel_per_host_byte.saturating_mul(bytes as u64));
    take(store, cost)
}

/// Charges `bytes` more for a call already charged its base price.
pub(super) fn charge_bytes(
    store: &mut StoreContextMut<'_, CallState>,
    bytes: usize,
) -> wasmtime::Result<()> {
    let cost = store
        .data()
        .limits
        .fuel_per_host_byte
        .saturating_mul(bytes as u64);
    take(store, cost)
}

/// The fuel left for a call that gathers its result piece by piece (a scan):
/// it checks [`Allowance::affords`] before each piece and pays with
/// [`charge_bytes`] at the end.
pub(super) fn allowance(store: &StoreContextMut<'_, CallState>) -> wasmtime::Result<Allowance> {
    Ok(Allowance {
        fuel: store.get_fuel()?,
        per_byte: store.data().limits.fuel_per_host_byte,
    })
}

fn take(store: &mut StoreContextMut<'_, CallState>, cost: u64) -> wasmtime::Result<()> {
    let left = store.get_fuel()?;
    match left.checked_sub(cost) {
        Some(rest) => store.set_fuel(rest),
        None => out_of_fuel(store),
    }
}

/// Ends the call exactly as running out of fuel in guest code would.
pub(super) fn out_of_fuel(store: &mut StoreContextMut<'_, CallState>) -> wasmtime::Result<()> {
    store.set_fuel(0)?;
    Err(Trap::OutOfFuel.into())
}

/// Records that the guest ran past `budget` and ends the call; the recorded
/// budget, not this error, decides the call's outcome.
pub(super) fn exceeded<T>(state: &mut CallState, budget: Budget) -> wasmtime::Result<T> {
    state.budget_exceeded = Some(budget);
    Err(wasmtime::format_err!("{budget:?} budget exceeded"))
}
