import TickwireBench
import Foundation
let a = CommandLine.arguments
print(BenchSuites.json(try BenchSuites.run(a[1], options: BenchOptions(events: Int(a[2]) ?? 10_000_000, runs: 3))))
