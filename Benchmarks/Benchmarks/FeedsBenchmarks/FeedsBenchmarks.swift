import Benchmark

// Filled by its issue.
let benchmarks: @Sendable () -> Void = {}
