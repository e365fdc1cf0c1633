plugins {
  id("com.android.application")
  id("org.jetbrains.kotlin.android")
}

android {
  namespace = "com.example.audiossl.demo"
  compileSdk = 34

  defaultConfig {
    applicationId = "com.example.audiossl.demo"
    minSdk = 26
    targetSdk = 34
    versionCode = 1
    versionName = "0.1.0"
  }

  buildTypes {
    release {
      isMinifyEnabled = false
    }
  }

  compileOptions {
    sourceCompatibility = JavaVersion.VERSION_17
    targetCompatibility = JavaVersion.VERSION_17
  }

  kotlinOptions {
    jvmTarget = "17"
  }

  // The interpreter memory-maps model.tflite straight from the APK.
  androidResources {
    noCompress += "tflite"
  }
}

dependencies {
  implementation(project(":core"))
  // LiteRT, the maintained successor of TensorFlow Lite (same org.tensorflow.lite
  // Interpreter API): builtin ops only, no Select-TF ops (export with --mode builtin).
  implementation("com.google.ai.edge.litert:litert:1.4.0")
  implementation("androidx.core:core-ktx:1.12.0")
  implementation("androidx.appcompat:appcompat:1.6.1")
  implementation("androidx.activity:activity-ktx:1.8.2")
  implementation("androidx.lifecycle:lifecycle-runtime-ktx:2.7.0")
  implementation("androidx.work:work-runtime-ktx:2.9.0")
  implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.7.3")
}

// Fails early, with the fix, when no exported model was copied into the assets.
val checkModelAssets by tasks.registering {
  description = "Checks that src/main/assets holds model.tflite and manifest.json."
  val assets = layout.projectDirectory.dir("src/main/assets")
  val required = listOf("model.tflite", "manifest.json").map { assets.file(it).asFile }
  doLast {
    val missing = required.filterNot { it.isFile }
    if (missing.isNotEmpty()) {
      throw GradleException(
        "missing ${missing.joinToString { it.name }} in ${assets.asFile}: export a builtin " +
          "training model and run ./copy_model.sh <export_dir> (see README.md)"
      )
    }
  }
}

tasks.named("preBuild") {
  dependsOn(checkModelAssets)
}
