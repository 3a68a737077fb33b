fn main() { println!("{}", runtime::hello()); }
