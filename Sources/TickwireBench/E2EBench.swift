/// Placeholder until its issue lands.
enum E2EBench {
    static func run(_ options: BenchOptions) throws -> BenchReport { throw BenchError.notImplemented("E2E") }
}
