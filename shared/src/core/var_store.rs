//! Editing a `tch` variable store: what `del model.out_head` or removing LoRA's parameters
//! does to a PyTorch `state_dict`.

use tch::nn::VarStore;

/// Drops every variable of `vs` whose name `remove` picks (a replaced head, merged LoRA
/// adapters), so that saving `vs` no longer writes it.
pub fn remove_variables(vs: &VarStore, remove: impl Fn(&str) -> bool) {
    let mut variables = vs.variables_.lock().expect("the variable store is not poisoned");
    let names: Vec<String> = variables.named_variables.keys().filter(|name| remove(name)).cloned().collect();
    for name in names {
        if let Some(old) = variables.named_variables.remove(&name) {
            variables.trainable_variables.retain(|var| var.tensor.data_ptr() != old.data_ptr());
        }
    }
}
