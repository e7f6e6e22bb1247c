mod market {
    use shmchan::ShmSafe;

    #[derive(ShmSafe, Clone, Copy, Default)]
    #[repr(C)]
    pub struct Account {
        pub id: u64,
        balance: u64,
    }
}

fn main() {
    // Getters and setters have their field's visibility: a view exposes no more than the struct.
    let mut account = market::Account::default();
    let mut v = market::AccountViewMut::new(&mut account);
    v.set_id(1);
    v.set_balance(1_000_000);
}
