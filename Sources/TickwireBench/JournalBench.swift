/// Placeholder until its issue lands.
enum JournalBench {
    static func run(_ options: BenchOptions) throws -> BenchReport { throw BenchError.notImplemented("Journal") }
}
