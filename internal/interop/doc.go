// Package interop holds the interoperability tests (no library code): the
// real Apache Kafka Java client and Mephisto agree on which partition a key
// belongs to, and exchange JSON records on shared topics, on kfake and on
// Apache Kafka. The Java side is java/Interop.java, run in the JDK's
// source-file mode with the jars test/kafka/pom.xml resolves; where Java or
// Maven is missing the tests skip with the reason.
package interop
