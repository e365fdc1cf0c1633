// The reusable, pure-JVM part of the app: manifest parser, model wrapper (the
// interpreter behind SignatureRunner), window buffer, weight store, update
// writer, tagged clips. No Android dependency, so `./gradlew :core:test` (or
// ../jvm-test.sh without Gradle) runs its tests on any JVM.
import org.jetbrains.kotlin.gradle.dsl.JvmTarget
import org.jetbrains.kotlin.gradle.tasks.KotlinCompile

plugins {
  id("org.jetbrains.kotlin.jvm")
}

java {
  sourceCompatibility = JavaVersion.VERSION_17
  targetCompatibility = JavaVersion.VERSION_17
}

tasks.withType<KotlinCompile>().configureEach {
  compilerOptions.jvmTarget.set(JvmTarget.JVM_17)
}

dependencies {
  testImplementation("junit:junit:4.13.2")
}
