/// Placeholder until its issue lands.
enum RouterBench {
    static func run(_ options: BenchOptions) throws -> BenchReport { throw BenchError.notImplemented("Router") }
}
