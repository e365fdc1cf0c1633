// Versions are pinned here and in app/build.gradle.kts; Gradle itself in
// gradle/wrapper/gradle-wrapper.properties.
plugins {
  id("com.android.application") version "8.2.2" apply false
  id("org.jetbrains.kotlin.android") version "1.9.22" apply false
  id("org.jetbrains.kotlin.jvm") version "1.9.22" apply false
}
