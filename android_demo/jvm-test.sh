#!/usr/bin/env bash
# Compiles the app's pure-JVM library module (android_demo/core) and runs its
# JUnit tests without Gradle or the Android SDK, with Debian's packages:
#   apt-get install kotlin junit4    (kotlinc 1.3, JUnit 4.13, Hamcrest)
# Exits 0 with a "skipped" line when kotlinc or JUnit is not installed.
# Usage: android_demo/jvm-test.sh [build_dir]   (default: a temporary folder)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
core="$here/core"
junit="${JUNIT_JAR:-/usr/share/java/junit4.jar}"
hamcrest="${HAMCREST_JAR:-/usr/share/java/hamcrest-core.jar}"
runtime="${KOTLIN_STDLIB_JAR:-/usr/share/java/kotlin-stdlib.jar}"

if ! command -v kotlinc >/dev/null || [[ ! -f "$junit" || ! -f "$hamcrest" || ! -f "$runtime" ]]; then
  echo "jvm-test: skipped (needs kotlinc and JUnit 4: apt-get install kotlin junit4)"
  exit 0
fi

if [[ $# -ge 1 ]]; then
  build="$1"
  mkdir -p "$build"
else
  build="$(mktemp -d)"
  trap 'rm -rf "$build"' EXIT
fi

# kotlinc's launcher passes JVM flags that newer JDKs warn about; keep real diagnostics.
quiet() { grep -v -E 'Xverify|noverify' || true; }

echo "jvm-test: compiling $core/src/main with $(kotlinc -version 2>&1 | grep -o 'kotlinc-jvm [^ ]*')"
kotlinc "$core/src/main/kotlin" -d "$build/main" 2>&1 | quiet
kotlinc -cp "$build/main:$junit" "$core/src/test/kotlin" -d "$build/test" 2>&1 | quiet

classes=$(cd "$build/test" && find . -name '*Test.class' | sed 's|^\./||; s|\.class$||; s|/|.|g' | sort)
java -cp "$build/main:$build/test:$core/src/test/resources:$runtime:$junit:$hamcrest" \
  org.junit.runner.JUnitCore $classes
