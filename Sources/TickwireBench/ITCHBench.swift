/// Placeholder until its issue lands.
enum ITCHBench {
    static func run(_ options: BenchOptions) throws -> BenchReport { throw BenchError.notImplemented("ITCH") }
}
