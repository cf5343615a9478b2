fn main() {
    println!("revinject: not yet implemented");
}
