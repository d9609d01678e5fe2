/// Placeholder until its issue lands.
enum StoreBench {
    static func run(_ options: BenchOptions) throws -> BenchReport { throw BenchError.notImplemented("Store") }
}
