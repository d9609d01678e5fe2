/// Placeholder until its issue lands.
enum RingBench {
    static func run(_ options: BenchOptions) throws -> BenchReport { throw BenchError.notImplemented("Ring") }
}
